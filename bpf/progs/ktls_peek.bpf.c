// SPDX-License-Identifier: GPL-2.0
// Lab 17: what a program beside kTLS sees.
//
// An SK_SKB verdict program for the receiving end of a connection. It writes
// down the first bytes and the length of what arrives, in the map `ktls_seen`,
// and lets it through. When the peer sends with kernel TLS, what arrives is
// TLS records, and that is what the program sees: a record header (0x17 0x03
// 0x03 and a length), then ciphertext -- never the text the peer wrote.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/* What the program saw last. */
struct seen {
	__u8 first[5]; /* the first 5 bytes: the size of a TLS record header */
	__u32 len;     /* how many bytes arrived at once */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct seen);
} ktls_seen SEC(".maps");

/* The receiving sockets this program watches. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} ktls_map SEC(".maps");

SEC("sk_skb")
int ktls_peek(struct __sk_buff *skb)
{
	__u32 zero = 0;
	struct seen *s = bpf_map_lookup_elem(&ktls_seen, &zero);

	if (s) {
		/* Copy the first bytes out of the packet data (fails, and copies nothing, if fewer arrived). */
		bpf_skb_load_bytes(skb, 0, s->first, sizeof(s->first));
		s->len = skb->len;
	}
	return SK_PASS;
}

char _license[] SEC("license") = "GPL";
