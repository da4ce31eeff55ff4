// SPDX-License-Identifier: GPL-2.0
// Near miss: remote_port used as the kernel gives it (network order, upper half): port 40000 reads 0x409c0000.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define CLIENT_IP   0x0a0e0001	/* 10.14.0.1 */
#define BACKEND_IP  0x0a0e0003	/* 10.14.0.3 */
#define PROXY_PORT  8000	/* where clients connect */
#define BACKEND_PORT 9000	/* where the backend listens */

/* The key splice_sockops.bpf.c stores each socket under: its own 4-tuple. */
struct splice_key {
	__u32 local_ip4;	/* network byte order */
	__u32 remote_ip4;	/* network byte order */
	__u32 local_port;	/* host byte order */
	__u32 remote_port;	/* host byte order */
};

/* The same map: the lab loads this program with `map name splice_hash pinned ...`. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 64);
	__type(key, struct splice_key);
	__type(value, __u64);
} splice_hash SEC(".maps");

SEC("sk_skb")
int splice_verdict(struct __sk_buff *skb)
{
	struct splice_key other = {};

	/*
	 * In __sk_buff, as in bpf_sock_ops: the addresses are in network
	 * order, local_port in host order, remote_port in network order in
	 * the upper half of the field (on little endian).
	 */
	if (skb->local_port == PROXY_PORT) {
		/* From the client: out of the backend-facing socket, whose
		 * local port is the client's port. */
		other.local_ip4 = skb->local_ip4;
		other.remote_ip4 = bpf_htonl(BACKEND_IP);
		other.local_port = skb->remote_port;
		other.remote_port = BACKEND_PORT;
	} else {
		/* From the backend: out of the client-facing socket, whose
		 * remote port is our local port. */
		other.local_ip4 = skb->local_ip4;
		other.remote_ip4 = bpf_htonl(CLIENT_IP);
		other.local_port = PROXY_PORT;
		other.remote_port = skb->local_port;
	}

	/* No flag: the data goes out of (egress) the other socket. SK_PASS if
	 * a socket was found under the key, SK_DROP if not. */
	return bpf_sk_redirect_hash(skb, &splice_hash, &other, 0);
}

char _license[] SEC("license") = "GPL";
