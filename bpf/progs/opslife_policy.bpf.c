// SPDX-License-Identifier: GPL-2.0
// Lab 15: an SK_MSG egress policy that also reports what it sees.
//
// It refuses (SK_DROP) every message to 192.0.2.0/24, from an IPv4 socket or
// from an IPv6 socket talking to an IPv4-mapped address (::ffff:192.0.2.x),
// as lab 05's solution does. For each message it writes one record to the
// ring buffer `msgs`: the family, remote_ip4 and remote_ip6 it read, and its
// verdict (bpf/helpers/opslife-log prints them).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "opslife_event.h"

#define AF_INET  2
#define AF_INET6 10

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 * 1024);
} msgs SEC(".maps");

/* Is addr (network byte order) in 192.0.2.0/24? */
static __always_inline int blocked(__u32 addr)
{
	return (addr & bpf_htonl(0xffffff00)) == bpf_htonl(0xc0000200);
}

SEC("sk_msg")
int opslife_policy(struct sk_msg_md *msg)
{
	int verdict = SK_PASS;
	struct opslife_event *e;

	if (msg->family == AF_INET && blocked(msg->remote_ip4))
		verdict = SK_DROP;
	/* ::ffff:a.b.c.d -- 80 zero bits, 16 one bits, then the IPv4 address */
	if (msg->family == AF_INET6 && msg->remote_ip6[0] == 0 && msg->remote_ip6[1] == 0 &&
	    msg->remote_ip6[2] == bpf_htonl(0x0000ffff) && blocked(msg->remote_ip6[3]))
		verdict = SK_DROP;

	e = bpf_ringbuf_reserve(&msgs, sizeof(*e), 0);
	if (e) {
		__builtin_memset(e, 0, sizeof(*e));
		e->op = OPSLIFE_SK_MSG;
		e->family = msg->family;
		e->local_port = msg->local_port;
		e->remote_port = bpf_ntohl(msg->remote_port);
		e->remote_ip4 = msg->remote_ip4;
		e->remote_ip6[0] = msg->remote_ip6[0];
		e->remote_ip6[1] = msg->remote_ip6[1];
		e->remote_ip6[2] = msg->remote_ip6[2];
		e->remote_ip6[3] = msg->remote_ip6[3];
		e->ret = verdict;
		bpf_ringbuf_submit(e, 0);
	}
	return verdict;
}

char _license[] SEC("license") = "GPL";
