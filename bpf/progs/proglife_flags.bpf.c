// SPDX-License-Identifier: GPL-2.0
// Redirects with a flag the kernel does not know. The redirect helpers accept
// one flag bit only, BPF_F_INGRESS (bit 0); any other bit makes them refuse:
// they return SK_DROP and mark nothing for redirect (net/core/sock_map.c).
//
//   msg_bad_flag         SK_MSG, returns the helper's answer: the send is dropped
//   msg_bad_flag_ignored SK_MSG, ignores the answer and returns SK_PASS: the data
//                        takes its normal path, as if there were no redirect
//   skb_bad_flag         SK_SKB, returns the helper's answer: the received data
//                        is dropped
//
// Each program has a map of its own; slot 1 holds the would-be target.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define TARGET 1
#define UNKNOWN_FLAG (1ULL << 1)	/* no such flag: only bit 0 has a meaning */

struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} msg_map SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} ignored_map SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} skb_map SEC(".maps");

SEC("sk_msg")
int msg_bad_flag(struct sk_msg_md *msg)
{
	return bpf_msg_redirect_map(msg, &msg_map, TARGET, BPF_F_INGRESS | UNKNOWN_FLAG);
}

SEC("sk_msg")
int msg_bad_flag_ignored(struct sk_msg_md *msg)
{
	bpf_msg_redirect_map(msg, &ignored_map, TARGET, BPF_F_INGRESS | UNKNOWN_FLAG);
	return SK_PASS;	/* whatever the helper said */
}

SEC("sk_skb")
int skb_bad_flag(struct __sk_buff *skb)
{
	return bpf_sk_redirect_map(skb, &skb_map, TARGET, BPF_F_INGRESS | UNKNOWN_FLAG);
}

char _license[] SEC("license") = "GPL";
