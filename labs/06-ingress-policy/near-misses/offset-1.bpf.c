// SPDX-License-Identifier: GPL-2.0
// Near miss: the bytes are read from offset 1, not 0: DROP at the start is missed.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("sk_skb")
int drop_prefix(struct __sk_buff *skb)
{
	char head[4];

	if (bpf_skb_load_bytes(skb, 1, head, sizeof(head)))
		return SK_PASS;
	if (head[0] == 'D' && head[1] == 'R' && head[2] == 'O' && head[3] == 'P')
		return SK_DROP;
	return SK_PASS;
}

char _license[] SEC("license") = "GPL";
