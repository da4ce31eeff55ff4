// SPDX-License-Identifier: GPL-2.0
// Near miss: only a payload that is exactly DROP (4 bytes) is dropped, not one that starts with it.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("sk_skb")
int drop_prefix(struct __sk_buff *skb)
{
	char head[4];

	if (skb->len != 4 || bpf_skb_load_bytes(skb, 0, head, sizeof(head)))
		return SK_PASS;
	if (head[0] == 'D' && head[1] == 'R' && head[2] == 'O' && head[3] == 'P')
		return SK_DROP;
	return SK_PASS;
}

char _license[] SEC("license") = "GPL";
