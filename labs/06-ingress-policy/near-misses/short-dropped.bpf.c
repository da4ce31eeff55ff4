// SPDX-License-Identifier: GPL-2.0
// Near miss: a payload shorter than 4 bytes (the load fails) is dropped instead of passed.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("sk_skb")
int drop_prefix(struct __sk_buff *skb)
{
	char head[4];

	if (bpf_skb_load_bytes(skb, 0, head, sizeof(head)))
		return SK_DROP;
	if (head[0] == 'D' && head[1] == 'R' && head[2] == 'O' && head[3] == 'P')
		return SK_DROP;
	return SK_PASS;
}

char _license[] SEC("license") = "GPL";
