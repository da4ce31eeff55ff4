// SPDX-License-Identifier: GPL-2.0
// Lab 05, the solution: an egress policy with SK_MSG.
//
// Refuse to send anything to 192.0.2.0/24 (TEST-NET-1, the documentation
// range); let everything else through. Attached to a SOCKMAP with the
// sk_msg_verdict attach type, this runs on every sendmsg() of a TCP socket in
// the map, before the data reaches TCP. SK_DROP makes the send fail with
// EACCES; SK_PASS lets the data go on as usual.
//
// Two kinds of socket can send to 192.0.2.0/24: an IPv4 socket, and an IPv6
// socket connected to an IPv4-mapped address (::ffff:192.0.2.1), whose
// packets are IPv4 on the wire. The policy must refuse both.
//
// The lab builds this file in the guest with:
//   clang $BPF_CFLAGS -c policy_egress.bpf.c -o policy_egress.bpf.o
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define AF_INET  2
#define AF_INET6 10

/* 192.0.2.0 and its /24 mask, written in host byte order. */
#define BLOCKED_NET_HOST  0xc0000200
#define BLOCKED_MASK_HOST 0xffffff00

/* Is addr, an IPv4 address in network byte order, in 192.0.2.0/24? */
static __always_inline int blocked(__u32 addr)
{
	/*
	 * The address is in network byte order: convert the constants (at
	 * compile time, for free), not the address, and compare the /24 prefix.
	 */
	return (addr & bpf_htonl(BLOCKED_MASK_HOST)) == bpf_htonl(BLOCKED_NET_HOST);
}

SEC("sk_msg")
int policy_egress(struct sk_msg_md *msg)
{
	/* An IPv4 socket: the destination is remote_ip4. */
	if (msg->family == AF_INET && blocked(msg->remote_ip4))
		return SK_DROP;

	/*
	 * An IPv6 socket talking to ::ffff:a.b.c.d talks IPv4 to a.b.c.d: the
	 * first 80 bits are zero, the next 16 are ones, the last 32 (word 3)
	 * are the IPv4 address. Any other IPv6 address is not in the rule.
	 */
	if (msg->family == AF_INET6 && msg->remote_ip6[0] == 0 && msg->remote_ip6[1] == 0 &&
	    msg->remote_ip6[2] == bpf_htonl(0x0000ffff) && blocked(msg->remote_ip6[3]))
		return SK_DROP;

	return SK_PASS;
}

char _license[] SEC("license") = "GPL";
