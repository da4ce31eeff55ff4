// SPDX-License-Identifier: GPL-2.0
// The smallest SK_SKB verdict program: let every received packet through.
// Attached with stream_verdict or skb_verdict, it runs on data arriving at a
// socket in the map, before the application can read it.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("sk_skb")
int pass_skb(struct __sk_buff *skb)
{
	return SK_PASS;
}

char _license[] SEC("license") = "GPL";
