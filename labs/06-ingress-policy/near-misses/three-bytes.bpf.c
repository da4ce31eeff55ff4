// SPDX-License-Identifier: GPL-2.0
// Near miss: only 3 bytes are compared, so DRONE (or anything starting with DRO) is dropped too.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("sk_skb")
int drop_prefix(struct __sk_buff *skb)
{
	char head[4];

	if (bpf_skb_load_bytes(skb, 0, head, sizeof(head)))
		return SK_PASS;
	if (head[0] == 'D' && head[1] == 'R' && head[2] == 'O')
		return SK_DROP;
	return SK_PASS;
}

char _license[] SEC("license") = "GPL";
