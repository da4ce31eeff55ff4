// SPDX-License-Identifier: GPL-2.0
// Lab 15: an IPv4-only sock_ops program -- a mistake.
//
// It puts the client end of every connection of its cgroup into the
// SOCKHASH `v4_socks` (key: the socket's cookie), so that the policy attached
// to that map judges what the socket sends. But it looks at AF_INET sockets
// only: an AF_INET6 socket is never inserted, so no policy ever runs for it,
// even when it talks IPv4 to ::ffff:192.0.2.1.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define AF_INET 2

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 64);
	__type(key, __u64);
	__type(value, __u64);
} v4_socks SEC(".maps");

SEC("sockops")
int opslife_v4only(struct bpf_sock_ops *skops)
{
	__u64 cookie;

	if (skops->family != AF_INET)	/* BUG: IPv6 sockets slip past */
		return 1;
	if (skops->op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB) {
		cookie = bpf_get_socket_cookie(skops);
		bpf_sock_hash_update(skops, &v4_socks, &cookie, BPF_ANY);
	}
	return 1;
}

char _license[] SEC("license") = "GPL";
