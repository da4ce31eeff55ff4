// SPDX-License-Identifier: GPL-2.0
// "Send to local" with a SOCKHASH: whatever a TCP socket sends is put straight
// into the receive queue of the socket at the other end of its connection,
// found by its 4-tuple. TCP carries nothing: no segments, no ACKs.
//
// The SOCKHASH key is socklab's `tuple` key, each socket stored under its
// own 4-tuple as seen from that socket:
//   struct { u32 local_ip4, remote_ip4;     network byte order
//            u32 local_port, remote_port; } host byte order
// The peer's key is ours with local and remote swapped. The context gives
// the addresses in network order, but the two ports differently:
//   msg->local_port   host byte order     -> use as is
//   msg->remote_port  network byte order  -> bpf_ntohl()
// (a 16-bit port in network order, stored in a 32-bit field: on x86 port
// 40000 = 0x9c40 reads as 0x409c0000, and bpf_ntohl() gives back 0x9c40).
//
// peer_by_tuple gets it right; peer_raw_port forgets the bpf_ntohl(), finds no
// socket under the key it built, and so drops every message.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define AF_INET 2	/* from <sys/socket.h>, which BPF programs cannot include */

struct tuple_key {
	__u32 local_ip4;
	__u32 remote_ip4;
	__u32 local_port;
	__u32 remote_port;
};

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 16);
	__type(key, struct tuple_key);
	__type(value, __u64);	/* 8 bytes: a lookup returns the socket cookie */
} peer_hash SEC(".maps");

SEC("sk_msg")
int peer_by_tuple(struct sk_msg_md *msg)
{
	struct tuple_key peer;

	if (msg->family != AF_INET)
		return SK_PASS;		/* not IPv4: no key for it, send it the normal way */

	peer.local_ip4 = msg->remote_ip4;
	peer.remote_ip4 = msg->local_ip4;
	peer.local_port = bpf_ntohl(msg->remote_port);
	peer.remote_port = msg->local_port;

	/* SK_PASS if the peer is in the map (redirected), SK_DROP if not. */
	return bpf_msg_redirect_hash(msg, &peer_hash, &peer, BPF_F_INGRESS);
}

SEC("sk_msg")
int peer_raw_port(struct sk_msg_md *msg)
{
	struct tuple_key peer;

	if (msg->family != AF_INET)
		return SK_PASS;

	peer.local_ip4 = msg->remote_ip4;
	peer.remote_ip4 = msg->local_ip4;
	peer.local_port = msg->remote_port;	/* the mistake: still in network order */
	peer.remote_port = msg->local_port;

	return bpf_msg_redirect_hash(msg, &peer_hash, &peer, BPF_F_INGRESS);
}

char _license[] SEC("license") = "GPL";
