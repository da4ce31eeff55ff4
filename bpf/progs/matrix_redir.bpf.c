// SPDX-License-Identifier: GPL-2.0
// The programs behind `npm run matrix` (bpf/helpers/sockmap-matrix.c): the
// four redirect modes, once with a SOCKMAP and once with a SOCKHASH as the
// redirect target, and a counter of the verdicts they return.
//
//   mode               type    attach type     helper                     flag
//   send to local      SK_MSG  sk_msg_verdict  bpf_msg_redirect_map/hash  BPF_F_INGRESS
//   send to egress     SK_MSG  sk_msg_verdict  bpf_msg_redirect_map/hash  none
//   ingress to egress  SK_SKB  skb_verdict     bpf_sk_redirect_map/hash   none
//   ingress to local   SK_SKB  skb_verdict     bpf_sk_redirect_map/hash   BPF_F_INGRESS
//
// Each program is attached to a map of its own, the "in" map: the socket whose
// data is steered goes there. The redirect target goes in the "out" map of the
// same type (SOCKMAP or SOCKHASH), at key 0, the one key every program asks
// for. So the probe attaches all eight programs once, and then only inserts
// sockets, sends and looks where the bytes went.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/* An "in" map: one slot, for the socket whose data is steered. */
#define IN_MAP(name, map_type)                     \
	struct {                                   \
		__uint(type, map_type);            \
		__uint(max_entries, 1);            \
		__type(key, __u32);                \
		__type(value, __u64);              \
	} name SEC(".maps")

IN_MAP(in_send_local_map, BPF_MAP_TYPE_SOCKMAP);
IN_MAP(in_send_egress_map, BPF_MAP_TYPE_SOCKMAP);
IN_MAP(in_in_egress_map, BPF_MAP_TYPE_SOCKMAP);
IN_MAP(in_in_local_map, BPF_MAP_TYPE_SOCKMAP);
IN_MAP(in_send_local_hash, BPF_MAP_TYPE_SOCKHASH);
IN_MAP(in_send_egress_hash, BPF_MAP_TYPE_SOCKHASH);
IN_MAP(in_in_egress_hash, BPF_MAP_TYPE_SOCKHASH);
IN_MAP(in_in_local_hash, BPF_MAP_TYPE_SOCKHASH);

/* The redirect targets, at key 0. */
IN_MAP(out_map, BPF_MAP_TYPE_SOCKMAP);
IN_MAP(out_hash, BPF_MAP_TYPE_SOCKHASH);

/* No program attached: where the probe tries inserts alone. */
IN_MAP(plain_map, BPF_MAP_TYPE_SOCKMAP);
IN_MAP(plain_hash, BPF_MAP_TYPE_SOCKHASH);

/* verdicts[SK_DROP] and verdicts[SK_PASS]: how often each was returned. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u32);
} verdicts SEC(".maps");

/*
 * The helpers return SK_PASS when they found a target they accept, SK_DROP
 * otherwise; the program returns that as its verdict, and counts it, so the
 * probe can tell "the program dropped it" from "the kernel lost it later".
 */
static __always_inline int counted(int verdict)
{
	__u32 key = verdict;
	__u32 *n = bpf_map_lookup_elem(&verdicts, &key);

	if (n)
		__sync_fetch_and_add(n, 1);
	return verdict;
}

SEC("sk_msg")
int send_local_map(struct sk_msg_md *msg)
{
	return counted(bpf_msg_redirect_map(msg, &out_map, 0, BPF_F_INGRESS));
}

SEC("sk_msg")
int send_egress_map(struct sk_msg_md *msg)
{
	return counted(bpf_msg_redirect_map(msg, &out_map, 0, 0));
}

SEC("sk_skb")
int in_egress_map(struct __sk_buff *skb)
{
	return counted(bpf_sk_redirect_map(skb, &out_map, 0, 0));
}

SEC("sk_skb")
int in_local_map(struct __sk_buff *skb)
{
	return counted(bpf_sk_redirect_map(skb, &out_map, 0, BPF_F_INGRESS));
}

SEC("sk_msg")
int send_local_hash(struct sk_msg_md *msg)
{
	__u32 key = 0;

	return counted(bpf_msg_redirect_hash(msg, &out_hash, &key, BPF_F_INGRESS));
}

SEC("sk_msg")
int send_egress_hash(struct sk_msg_md *msg)
{
	__u32 key = 0;

	return counted(bpf_msg_redirect_hash(msg, &out_hash, &key, 0));
}

SEC("sk_skb")
int in_egress_hash(struct __sk_buff *skb)
{
	__u32 key = 0;

	return counted(bpf_sk_redirect_hash(skb, &out_hash, &key, 0));
}

SEC("sk_skb")
int in_local_hash(struct __sk_buff *skb)
{
	__u32 key = 0;

	return counted(bpf_sk_redirect_hash(skb, &out_hash, &key, BPF_F_INGRESS));
}

char _license[] SEC("license") = "GPL";
