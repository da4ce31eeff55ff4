// SPDX-License-Identifier: GPL-2.0
// Egress policy with SK_MSG: refuse to send anything to 192.0.2.0/24
// (TEST-NET-1, the documentation range). Attached to a SOCKMAP with the
// sk_msg_verdict attach type, it runs on every sendmsg() of a TCP socket in
// the map, before the data reaches TCP. SK_DROP makes the send fail with
// EACCES; SK_PASS lets the data go on as usual.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define AF_INET 2

/* The addresses in sk_msg_md are in network byte order, so convert our
 * constants once, at compile time, rather than the packet's fields. */
#define BLOCKED_NET  bpf_htonl(0xc0000200)	/* 192.0.2.0 */
#define BLOCKED_MASK bpf_htonl(0xffffff00)	/* /24 */

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
