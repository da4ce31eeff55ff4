// SPDX-License-Identifier: GPL-2.0
// Near miss: DROP is searched for anywhere in the first bytes, not only at the start.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("sk_skb")
int drop_prefix(struct __sk_buff *skb)
{
	char head[4];

	for (int off = 0; off < 16; off++) {
		if (bpf_skb_load_bytes(skb, off, head, sizeof(head)))
			break;
		if (head[0] == 'D' && head[1] == 'R' && head[2] == 'O' && head[3] == 'P')
			return SK_DROP;
	}
	return SK_PASS;
}

char _license[] SEC("license") = "GPL";
