// SPDX-License-Identifier: GPL-2.0
// Lab 12: a stream parser for length-prefixed messages.
//
// TCP delivers a stream of bytes: one send() may arrive in pieces, and
// several sends may arrive as one chunk. The protocol here puts the edges
// back: every message is
//
//   +-------------------+-------------------------+
//   | length: 2 bytes,  | payload: `length` bytes |
//   | big-endian        |                         |
//   +-------------------+-------------------------+
//
// The length counts the payload only, not the 2 header bytes.
//
// The kernel's stream parser (strparser) calls parse_frame() each time more
// data has arrived, until it knows how long the next message is:
//   0      not enough data to tell yet: call me again when more arrives
//   N > 0  the message is N bytes long, header included; the kernel waits
//          until all N bytes are there, then runs count_and_filter() once,
//          on exactly those N bytes
//   < 0    an error: the kernel stops parsing this socket for good
//
// Both programs read the data from offset 0. Careful: when a message starts
// in the middle of a received segment (two messages in one send), the kernel
// still hands the programs that segment from its first byte (measured on
// 6.1, 6.12 and 6.18; the lab's last steps show it).
//
// The lab builds this file in the guest with:
//   clang $BPF_CFLAGS -c framing.bpf.c -o framing.bpf.o
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define HEADER_LEN 2 /* the length field, in bytes */

/* The receiving sockets. Both programs are attached to this map. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} framing_map SEC(".maps");

/* verdict_runs[0]: how many times count_and_filter() ran, i.e. how many
 * messages the parser delivered. The lab reads it with bpftool. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} verdict_runs SEC(".maps");

/* TODO: return how long the next message is, header included (see above).
 * Read the header with bpf_skb_load_bytes(skb, offset, &to, size). */
SEC("sk_skb/stream_parser")
int parse_frame(struct __sk_buff *skb)
{
	return 0; /* TODO */
}

/* Given: runs once per message the parser found. Counts the run, then
 * drops a message whose payload starts with 'X' and passes the others. */
SEC("sk_skb")
int count_and_filter(struct __sk_buff *skb)
{
	__u32 zero = 0;
	__u64 *runs = bpf_map_lookup_elem(&verdict_runs, &zero);
	char first;

	if (runs)
		__sync_fetch_and_add(runs, 1);

	/* The first payload byte comes right after the header. */
	if (bpf_skb_load_bytes(skb, HEADER_LEN, &first, 1) == 0 && first == 'X')
		return SK_DROP;
	return SK_PASS;
}

char _license[] SEC("license") = "GPL";
