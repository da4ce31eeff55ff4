// SPDX-License-Identifier: GPL-2.0
// Near miss: DROP must be followed by a space (5 bytes are loaded), so DROP alone gets through.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("sk_skb")
int drop_prefix(struct __sk_buff *skb)
{
	char head[5];

	if (bpf_skb_load_bytes(skb, 0, head, sizeof(head)))
		return SK_PASS;
	if (head[0] == 'D' && head[1] == 'R' && head[2] == 'O' && head[3] == 'P' && head[4] == ' ')
		return SK_DROP;
	return SK_PASS;
}

char _license[] SEC("license") = "GPL";
