// SPDX-License-Identifier: GPL-2.0
// The simplest stream parser: every chunk of received data is one message.
//
// A stream parser (attach type stream_parser) runs first on the data a TCP
// socket receives and answers one question: how long is the next message?
//   N > 0   the message is N bytes; the stream verdict program then runs once
//           on exactly those N bytes (waiting for more data if N > skb->len)
//   0       not enough data yet to tell: call me again when more arrives
//   < 0     an error: the parser stops, and the socket reports the error
// A real protocol parser reads a length field or looks for a delimiter. This
// one returns skb->len, so the verdict program sees the data as it came.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("sk_skb/stream_parser")
int parse_chunk(struct __sk_buff *skb)
{
	return skb->len;
}

char _license[] SEC("license") = "GPL";
