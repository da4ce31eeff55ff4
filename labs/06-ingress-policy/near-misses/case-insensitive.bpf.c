// SPDX-License-Identifier: GPL-2.0
// Near miss: the comparison ignores case, so drop and Drop are dropped too.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("sk_skb")
int drop_prefix(struct __sk_buff *skb)
{
	char head[4];

	if (bpf_skb_load_bytes(skb, 0, head, sizeof(head)))
		return SK_PASS;
	/* | 0x20 turns an ASCII capital into its small letter */
	if ((head[0] | 0x20) == 'd' && (head[1] | 0x20) == 'r' && (head[2] | 0x20) == 'o' && (head[3] | 0x20) == 'p')
		return SK_DROP;
	return SK_PASS;
}

char _license[] SEC("license") = "GPL";
