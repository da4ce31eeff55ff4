// SPDX-License-Identifier: GPL-2.0
// Lab 14: put both of a proxy's sockets into a SOCKHASH, each under its own
// 4-tuple, the moment its connection is established.
//
// A sock_ops program runs for the TCP sockets of its cgroup. Two callbacks
// matter here, and the proxy needs both:
//   PASSIVE_ESTABLISHED  the socket accept() returns (proxy <-> client)
//   ACTIVE_ESTABLISHED   the socket connect() made  (proxy <-> backend)
// Only sockets whose local address is the proxy's, 10.14.0.2, go in.
//
// The key, as each socket sees its own connection:
//   struct { u32 local_ip4, remote_ip4;      network byte order
//            u32 local_port, remote_port; }  host byte order
// bpf_sock_ops gives the addresses in network order and local_port in host
// order, but remote_port in network order, in a 32-bit field: on x86 port
// 9000 (0x2328) reads 0x28230000. bpf_ntohl() turns it into 0x2328.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define AF_INET 2
#define PROXY_IP 0x0a0e0002	/* 10.14.0.2, host byte order */

struct splice_key {
	__u32 local_ip4;
	__u32 remote_ip4;
	__u32 local_port;
	__u32 remote_port;
};

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 64);
	__type(key, struct splice_key);
	__type(value, __u64);	/* 8 bytes: a lookup returns the socket cookie */
} splice_hash SEC(".maps");

SEC("sockops")
int splice_sockops(struct bpf_sock_ops *skops)
{
	struct splice_key key;

	if (skops->op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB &&
	    skops->op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB)
		return 1;	/* other events are none of our business */
	if (skops->family != AF_INET || skops->local_ip4 != bpf_htonl(PROXY_IP))
		return 1;	/* not one of the proxy's sockets */

	key.local_ip4 = skops->local_ip4;
	key.remote_ip4 = skops->remote_ip4;
	key.local_port = skops->local_port;
	key.remote_port = bpf_ntohl(skops->remote_port);
	bpf_sock_hash_update(skops, &splice_hash, &key, BPF_ANY);
	return 1;
}

char _license[] SEC("license") = "GPL";
