// SPDX-License-Identifier: GPL-2.0
// Exercise (lab 05): an egress policy with SK_MSG.
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
	 * TODO: return 1 when addr lies in 192.0.2.0/24, 0 otherwise.
	 *
	 * Careful: addr is in network byte order, the constants above are
	 * not. bpf_htonl() converts a constant (at compile time).
	 */
	return 0;
}

SEC("sk_msg")
int policy_egress(struct sk_msg_md *msg)
{
	/* An IPv4 socket: the destination is remote_ip4. */
	if (msg->family == AF_INET && blocked(msg->remote_ip4))
		return SK_DROP;

	/*
	 * TODO: an IPv6 socket (AF_INET6) connected to an IPv4-mapped address,
	 * ::ffff:a.b.c.d, sends IPv4 to a.b.c.d: return SK_DROP when a.b.c.d is
	 * blocked. In remote_ip6[0..3] (network byte order) such an address
	 * reads 0, 0, 0x0000ffff, a.b.c.d. Any other IPv6 destination is not
	 * in the rule.
	 */

	return SK_PASS;
}

char _license[] SEC("license") = "GPL";
