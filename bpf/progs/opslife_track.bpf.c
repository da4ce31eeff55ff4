// SPDX-License-Identifier: GPL-2.0
// Lab 15: a sock_ops program that watches the life of every TCP socket made
// in its cgroup.
//
// - It writes one record per callback to the ring buffer `events`
//   (bpf/helpers/opslife-log prints them): the callback, the socket's family,
//   state, ports and addresses, and the result of what it did.
// - It keeps the SOCKHASH `socks`, keyed by socket cookie: it tries to insert
//   the socket on listen(), on connect(), and when a connection is
//   established, and records what the kernel answered.
// - Two switches in the array `settings` (0 = off):
//     settings[0]  ask for STATE_CB: bpf_sock_ops_cb_flags_set(STATE_CB_FLAG)
//     settings[1]  in STATE_CB, delete the socket's entry when it leaves
//                  ESTABLISHED or LISTEN
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "opslife_event.h"

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 * 1024);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u32);
} settings SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 64);
	__type(key, __u64);	/* the socket's cookie */
	__type(value, __u64);	/* a lookup from userspace returns the cookie */
} socks SEC(".maps");

static __always_inline int setting(__u32 i)
{
	__u32 *v = bpf_map_lookup_elem(&settings, &i);

	return v && *v;
}

SEC("sockops")
int opslife_track(struct bpf_sock_ops *skops)
{
	__u64 cookie = bpf_get_socket_cookie(skops);
	struct opslife_event *e;
	long ret = OPSLIFE_NO_RET;

	switch (skops->op) {
	case BPF_SOCK_OPS_TCP_LISTEN_CB:
	case BPF_SOCK_OPS_TCP_CONNECT_CB:
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
		/* The kernel decides where an insert is allowed: we just try. */
		ret = bpf_sock_hash_update(skops, &socks, &cookie, BPF_ANY);
		/* STATE_CB runs only for a socket that asked for it. */
		if (setting(0))
			bpf_sock_ops_cb_flags_set(skops, BPF_SOCK_OPS_STATE_CB_FLAG);
		break;
	case BPF_SOCK_OPS_STATE_CB:
		/* args[0] is the state the socket leaves, args[1] the new one. */
		if (setting(1) && (skops->args[0] == BPF_TCP_ESTABLISHED ||
				   skops->args[0] == BPF_TCP_LISTEN))
			ret = bpf_map_delete_elem(&socks, &cookie);
		break;
	}

	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e)
		return 1;
	e->op = skops->op;
	e->family = skops->family;
	e->state = skops->state;
	e->local_port = skops->local_port;
	e->remote_port = bpf_ntohl(skops->remote_port);	/* the port is in the top 16 bits */
	e->args[0] = skops->args[0];
	e->args[1] = skops->args[1];
	e->remote_ip4 = skops->remote_ip4;
	e->remote_ip6[0] = skops->remote_ip6[0];
	e->remote_ip6[1] = skops->remote_ip6[1];
	e->remote_ip6[2] = skops->remote_ip6[2];
	e->remote_ip6[3] = skops->remote_ip6[3];
	e->ret = ret;
	e->cookie = cookie;
	bpf_ringbuf_submit(e, 0);
	return 1;
}

char _license[] SEC("license") = "GPL";
