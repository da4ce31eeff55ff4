// SPDX-License-Identifier: GPL-2.0
// A SOCKMAP bypass for TCP between two local sockets (e.g. two containers on
// one host, joined by a veth pair). Once both ends of a connection are in the
// map, whatever one end sends is put straight into the other end's receive
// queue: no TCP segments, no IP, no veth, no second network stack.
//
//   sockops_prog  attached to a cgroup: on ACTIVE/PASSIVE_ESTABLISHED, store
//                 the socket in sock_map under its own local port.
//   sk_msg_prog   attached to sock_map (sk_msg_verdict): on sendmsg(), look up
//                 the socket that owns the peer's port and redirect the data
//                 to its ingress (BPF_F_INGRESS) -- as if it had arrived.
//
// Keying by port alone is a teaching shortcut: it assumes that the ports of
// the connections in the cgroup are unique on the host.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 64);
	__type(key, __u32);	/* a local TCP port, host byte order */
	__type(value, __u64);	/* socket cookie on lookup */
} sock_map SEC(".maps");

SEC("sockops")
int sockops_prog(struct bpf_sock_ops *skops)
{
	__u32 port;

	if (skops->op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB &&
	    skops->op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB)
		return 1;
	port = skops->local_port;	/* local_port is in host byte order */
	bpf_sock_hash_update(skops, &sock_map, &port, BPF_ANY);
	return 1;
}

SEC("sk_msg")
int sk_msg_prog(struct sk_msg_md *msg)
{
	/* remote_port is in network byte order, in a 32-bit field. */
	__u32 peer_port = bpf_ntohl(msg->remote_port);

	/* Peer found: the helper marks the message for redirect and we return
	 * SK_PASS to let it go. Peer not in the map (it lives outside our
	 * cgroup): the helper fails, and SK_PASS sends the data the normal way. */
	bpf_msg_redirect_hash(msg, &sock_map, &peer_port, BPF_F_INGRESS);
	return SK_PASS;
}

char _license[] SEC("license") = "GPL";
