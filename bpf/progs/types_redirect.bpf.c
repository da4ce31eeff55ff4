// SPDX-License-Identifier: GPL-2.0
// Two SK_SKB verdict programs for any kind of socket a SOCKMAP takes (TCP,
// UDP, UNIX stream and dgram, VSOCK stream and seqpacket). Attached as
// skb_verdict, each runs when a socket in its map receives data, and
// redirects the data to the socket in slot 1 of the same map:
//   to_egress  no flag:        the slot-1 socket sends the data on to its peer
//   to_local   BPF_F_INGRESS:  the data lands in the slot-1 socket's own
//                              receive queue
// The program never looks at the socket's family: the kernel does the work
// of moving data between kinds of sockets -- where it can.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} egress_map SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} local_map SEC(".maps");

SEC("sk_skb")
int to_egress(struct __sk_buff *skb)
{
	return bpf_sk_redirect_map(skb, &egress_map, 1, 0);
}

SEC("sk_skb")
int to_local(struct __sk_buff *skb)
{
	return bpf_sk_redirect_map(skb, &local_map, 1, BPF_F_INGRESS);
}

char _license[] SEC("license") = "GPL";
