// SPDX-License-Identifier: GPL-2.0
// Near miss: an IPv6 address is judged by its last 32 bits alone, without the ::ffff: prefix: fd00::192.0.2.1 is refused.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define AF_INET  2
#define AF_INET6 10
#define BLOCKED_NET_HOST  0xc0000200
#define BLOCKED_MASK_HOST 0xffffff00

static __always_inline int blocked(__u32 addr)
{
	return (addr & bpf_htonl(BLOCKED_MASK_HOST)) == bpf_htonl(BLOCKED_NET_HOST);
}

SEC("sk_msg")
int policy_egress(struct sk_msg_md *msg)
{
	if (msg->family == AF_INET && blocked(msg->remote_ip4))
		return SK_DROP;
	if (msg->family == AF_INET6 && blocked(msg->remote_ip6[3]))
		return SK_DROP;
	return SK_PASS;
}

char _license[] SEC("license") = "GPL";
