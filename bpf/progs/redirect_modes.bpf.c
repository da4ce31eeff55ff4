// SPDX-License-Identifier: GPL-2.0
// The four redirect modes of SOCKMAP, one small program each, side by side:
//
//   program         type    attach type     helper                   flag
//   send_to_local   SK_MSG  sk_msg_verdict  bpf_msg_redirect_map()   BPF_F_INGRESS
//   send_to_egress  SK_MSG  sk_msg_verdict  bpf_msg_redirect_map()   none
//   in_to_egress    SK_SKB  skb_verdict     bpf_sk_redirect_map()    none
//   in_to_local     SK_SKB  skb_verdict     bpf_sk_redirect_map()    BPF_F_INGRESS
//
// SK_MSG programs run when a socket in the map *sends* (sendmsg on TCP);
// SK_SKB verdict programs run when a socket in the map *receives*.
// BPF_F_INGRESS puts the data in the target socket's receive queue, as if it
// had arrived from the network ("local"); without it the target socket
// transmits the data to its own peer ("egress").
//
// Each program has a map of its own, so that each can be attached to its map
// once and for all. In every map, slot 0 holds the socket whose data we steer
// and slot 1 the target: every program redirects to key 1.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define TARGET 1	/* the slot of the redirect target in every map */

struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} map_send_local SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} map_send_egress SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} map_in_egress SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} map_in_local SEC(".maps");

/*
 * The helpers only *mark* the data for redirect; the verdict the program
 * returns decides. They return SK_PASS when a socket sits at the key and
 * SK_DROP when the slot is empty, so returning their result drops data that
 * has nowhere to go instead of letting it take the normal path.
 */

/* Send to local: what this socket sends lands in the target's receive queue. */
SEC("sk_msg")
int send_to_local(struct sk_msg_md *msg)
{
	return bpf_msg_redirect_map(msg, &map_send_local, TARGET, BPF_F_INGRESS);
}

/* Send to egress: what this socket sends is sent by the target instead. */
SEC("sk_msg")
int send_to_egress(struct sk_msg_md *msg)
{
	return bpf_msg_redirect_map(msg, &map_send_egress, TARGET, 0);
}

/* Ingress to egress: what this socket receives, the target sends on (a splice). */
SEC("sk_skb")
int in_to_egress(struct __sk_buff *skb)
{
	return bpf_sk_redirect_map(skb, &map_in_egress, TARGET, 0);
}

/* Ingress to local: what this socket receives lands in the target's receive queue. */
SEC("sk_skb")
int in_to_local(struct __sk_buff *skb)
{
	return bpf_sk_redirect_map(skb, &map_in_local, TARGET, BPF_F_INGRESS);
}

char _license[] SEC("license") = "GPL";
