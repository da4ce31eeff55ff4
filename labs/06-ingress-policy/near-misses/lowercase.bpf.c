// SPDX-License-Identifier: GPL-2.0
// Near miss: the bytes are compared with drop in small letters, so DROP gets through.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("sk_skb")
int drop_prefix(struct __sk_buff *skb)
{
	char head[4];

	if (bpf_skb_load_bytes(skb, 0, head, sizeof(head)))
		return SK_PASS;
	if (head[0] == 'd' && head[1] == 'r' && head[2] == 'o' && head[3] == 'p')
		return SK_DROP;
	return SK_PASS;
}

char _license[] SEC("license") = "GPL";
