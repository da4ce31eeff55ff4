// SPDX-License-Identifier: GPL-2.0
// Near miss: half the prefix: only the first two octets (192.0) are compared, a /16.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define AF_INET  2
#define AF_INET6 10
#define BLOCKED_NET_HOST  0xc0000200
#define BLOCKED_MASK_HOST 0xffffff00

static __always_inline int blocked(__u32 addr)
{
	return (addr & bpf_htonl(0xffff0000)) == bpf_htonl(0xc0000000);
}

SEC("sk_msg")
int policy_egress(struct sk_msg_md *msg)
{
	if (msg->family == AF_INET && blocked(msg->remote_ip4))
		return SK_DROP;
	if (msg->family == AF_INET6 && msg->remote_ip6[0] == 0 && msg->remote_ip6[1] == 0 &&
	    msg->remote_ip6[2] == bpf_htonl(0x0000ffff) && blocked(msg->remote_ip6[3]))
		return SK_DROP;
	return SK_PASS;
}

char _license[] SEC("license") = "GPL";
