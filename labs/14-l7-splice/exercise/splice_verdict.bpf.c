// SPDX-License-Identifier: GPL-2.0
// Lab 14: splice a proxy's two sockets with SK_SKB.
//
// The proxy at 10.14.0.2 holds two TCP sockets per client:
//   client-facing   10.14.0.2:8000 <-> 10.14.0.1:P   (accept())
//   backend-facing  10.14.0.2:P    <-> 10.14.0.3:9000 (connect() from port P,
//                                                     the client's own port)
// Both sit in splice_hash under their own 4-tuple (splice_sockops.bpf.c).
// This program runs when data arrives on either one, and sends it out of the
// OTHER one: the client's request goes to the backend, the backend's reply to
// the client, and the proxy process never reads a byte.
//
// The lab builds this file in the guest with:
//   clang $BPF_CFLAGS -c splice_verdict.bpf.c -o splice_verdict.bpf.o
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
	 * TODO: fill `other` with the key of the proxy's OTHER socket:
	 *  - data from the client (it arrived on local port PROXY_PORT) leaves by
	 *    the backend-facing socket;
	 *  - data from the backend leaves by the client-facing socket.
	 * Then redirect to it with bpf_sk_redirect_hash(), so that the other
	 * socket SENDS the data, and return what the helper returns.
	 */
	(void)other;
	return SK_PASS;	/* for now: the data stays where it arrived */
}

char _license[] SEC("license") = "GPL";
