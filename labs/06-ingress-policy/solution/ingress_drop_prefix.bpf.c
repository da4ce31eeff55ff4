// SPDX-License-Identifier: GPL-2.0
// Lab 06, the solution: an ingress policy with SK_SKB.
//
// Drop received data that starts with "DROP"; let everything else through.
// Attached to a SOCKMAP as skb_verdict (or as stream_verdict, behind a stream
// parser), this runs for every socket in the map when data arrives, *before*
// the application can read it:
//   SK_PASS  the data goes on to the socket's receive queue, as usual
//   SK_DROP  the data is thrown away: the application never sees it
// The sender is not told: its send() has already succeeded.
//
// The lab builds this file in the guest with:
//   clang $BPF_CFLAGS -c ingress_drop_prefix.bpf.c -o ingress_drop_prefix.bpf.o
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("sk_skb")
int drop_prefix(struct __sk_buff *skb)
{
	char head[4];

	/* Copy the first 4 bytes of the payload. A shorter payload cannot
	 * start with "DROP", and the helper fails on it: let it pass. */
	if (bpf_skb_load_bytes(skb, 0, head, sizeof(head)))
		return SK_PASS;

	if (head[0] == 'D' && head[1] == 'R' && head[2] == 'O' && head[3] == 'P')
		return SK_DROP;

	return SK_PASS;
}

char _license[] SEC("license") = "GPL";
