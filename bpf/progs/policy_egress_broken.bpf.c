// SPDX-License-Identifier: GPL-2.0
// A broken copy of policy_egress.bpf.c, for the lab's broken variant: it
// compares the destination address with constants in host byte order. On a
// little-endian machine 192.0.2.1 in the packet reads as 0x010200c0, which
// never matches 0xc0000200, so the program lets everything through.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define AF_INET 2

#define BLOCKED_NET  0xc0000200		/* BUG: host byte order */
#define BLOCKED_MASK 0xffffff00		/* BUG: host byte order */

SEC("sk_msg")
int policy_egress(struct sk_msg_md *msg)
{
	if (msg->family != AF_INET)
		return SK_PASS;
	if ((msg->remote_ip4 & BLOCKED_MASK) != BLOCKED_NET)
		return SK_PASS;
	return SK_DROP;
}

char _license[] SEC("license") = "GPL";
