// SPDX-License-Identifier: GPL-2.0
// A sock_ops program that puts every TCP connection of its cgroup into a
// SOCKMAP, the moment the connection is established:
//   key 0: the socket that called connect()   (active open)
//   key 1: the socket that accept() returns   (passive open)
// Attached to a cgroup (not to a map), it runs for the sockets that processes
// in that cgroup, or in cgroups below it, create.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);	/* 8 bytes: a lookup returns the socket cookie */
} sock_map SEC(".maps");

SEC("sockops")
int sockops_insert(struct bpf_sock_ops *skops)
{
	__u32 key;

	switch (skops->op) {
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
		key = 0;
		break;
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
		key = 1;
		break;
	default:
		/* Other events (RTO, state changes, ...) are none of our business. */
		return 1;
	}
	/* BPF_ANY: a newer connection takes the slot of an older one. */
	bpf_sock_map_update(skops, &sock_map, &key, BPF_ANY);
	return 1;
}

char _license[] SEC("license") = "GPL";
