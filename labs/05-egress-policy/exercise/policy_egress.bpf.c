// SPDX-License-Identifier: GPL-2.0
// Exercise (lab 05): an egress policy with SK_MSG.
//
// Refuse to send anything to 192.0.2.0/24 (TEST-NET-1, the documentation
// range); let everything else through. Attached to a SOCKMAP with the
// sk_msg_verdict attach type, this runs on every sendmsg() of a TCP socket in
// the map, before the data reaches TCP. SK_DROP makes the send fail with
// EACCES; SK_PASS lets the data go on as usual.
//
// The lab builds this file in the guest with:
//   clang $BPF_CFLAGS -c policy_egress.bpf.c -o policy_egress.bpf.o
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define AF_INET 2

/* 192.0.2.0 and its /24 mask, written in host byte order. */
#define BLOCKED_NET_HOST  0xc0000200
#define BLOCKED_MASK_HOST 0xffffff00

SEC("sk_msg")
int policy_egress(struct sk_msg_md *msg)
{
	if (msg->family != AF_INET)
		return SK_PASS;

	/*
	 * TODO: return SK_DROP when the destination, msg->remote_ip4, lies in
	 * 192.0.2.0/24.
	 *
	 * Careful: remote_ip4 is in network byte order, the constants above
	 * are not. bpf_htonl() converts a constant (at compile time).
	 */

	return SK_PASS;
}

char _license[] SEC("license") = "GPL";
