// SPDX-License-Identifier: GPL-2.0
// BROKEN on purpose, for labs/06-ingress-policy/broken.yaml: the same program
// as ingress_drop_prefix.bpf.c with a copy-and-paste slip -- the "DROP"
// branch returns SK_PASS too, so every payload reaches the application.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("sk_skb")
int drop_prefix(struct __sk_buff *skb)
{
	char head[4];

	if (bpf_skb_load_bytes(skb, 0, head, sizeof(head)))
		return SK_PASS;

	if (head[0] == 'D' && head[1] == 'R' && head[2] == 'O' && head[3] == 'P')
		return SK_PASS;		/* the slip: should be SK_DROP */
	return SK_PASS;
}

char _license[] SEC("license") = "GPL";
