// SPDX-License-Identifier: GPL-2.0
// The SK_MSG helpers, one small program per idea (lab 13):
//
//   program        map          what it does with each message
//   read_payload   map_read     reads the bytes at data..data_end, then
//                               bpf_msg_pull_data() to read the last byte
//   apply_ten      map_apply    bpf_msg_apply_bytes(10): one verdict per 10 bytes
//   cork_ten       map_cork     bpf_msg_cork_bytes(10): wait for 10 bytes
//   pop_header     map_pop      bpf_msg_pop_data(): strip a leading "HDR:"
//   push_header    map_push     bpf_msg_push_data(): insert 4 bytes in front, write "HDR:"
//
// Every program passes the message on (SK_PASS) and writes down what it saw
// in `notes`, one entry per program, which the lab reads with bpftool.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct note {
	__u32 runs;      /* how many times the program ran */
	__u32 size[3];   /* msg->size at its first three runs */
	__u32 len;       /* data_end - data: how many bytes it could read directly */
	__u32 after;     /* msg->size after the helper changed the message */
	__s32 ret;       /* what the helper returned (0, or -errno) */
	char head[8];    /* the first bytes at data (up to 7) */
	char last[2];    /* the message's last byte, read after bpf_msg_pull_data() */
	__u8 fresh[4];   /* what push_data left in the bytes it inserted */
};

enum { READ, APPLY, CORK, POP, PUSH };

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 5);
	__type(key, __u32);
	__type(value, struct note);
} notes SEC(".maps");

/* One SOCKMAP per program, so that each is attached once; the sender goes in at key 0. */
#define SOCKMAP_OF_ONE(name)                      \
	struct {                                  \
		__uint(type, BPF_MAP_TYPE_SOCKMAP); \
		__uint(max_entries, 1);           \
		__type(key, __u32);               \
		__type(value, __u64);             \
	} name SEC(".maps")

SOCKMAP_OF_ONE(map_read);
SOCKMAP_OF_ONE(map_apply);
SOCKMAP_OF_ONE(map_cork);
SOCKMAP_OF_ONE(map_pop);
SOCKMAP_OF_ONE(map_push);

/* Counts a run and writes down the message's size. */
static __always_inline struct note *count_run(__u32 key, struct sk_msg_md *msg)
{
	struct note *n = bpf_map_lookup_elem(&notes, &key);

	if (!n)
		return 0;
	if (n->runs < 3)
		n->size[n->runs] = msg->size;
	n->runs++;
	return n;
}

/*
 * data and data_end point into the message. The verifier lets a program
 * read a byte only after it has checked that the byte lies before data_end.
 */
static __always_inline void copy_head(struct note *n, struct sk_msg_md *msg)
{
	char *data = (char *)(long)msg->data;
	char *data_end = (char *)(long)msg->data_end;

	n->len = data_end - data;
	for (int i = 0; i < 7; i++) {
		if (data + i + 1 > data_end)
			break;
		n->head[i] = data[i];
	}
}

/* Reads the first bytes; then asks the kernel to make the last byte readable. */
SEC("sk_msg")
int read_payload(struct sk_msg_md *msg)
{
	struct note *n = count_run(READ, msg);
	__u32 size = msg->size;
	char *data, *data_end;

	if (!n)
		return SK_PASS;
	copy_head(n, msg);
	/* Afterwards data..data_end covers bytes size-1 .. size of the message. */
	n->ret = bpf_msg_pull_data(msg, size - 1, size, 0);
	/* The helper moved data and data_end: read them again, check again. */
	data = (char *)(long)msg->data;
	data_end = (char *)(long)msg->data_end;
	if (data + 1 <= data_end)
		n->last[0] = data[0];
	return SK_PASS;
}

/* One verdict for the next 10 bytes: the program runs again after them. */
SEC("sk_msg")
int apply_ten(struct sk_msg_md *msg)
{
	struct note *n = count_run(APPLY, msg);

	if (n)
		n->ret = bpf_msg_apply_bytes(msg, 10);
	return SK_PASS;
}

/* Hold the data back until 10 bytes have been sent; then run again on all of them. */
SEC("sk_msg")
int cork_ten(struct sk_msg_md *msg)
{
	struct note *n = count_run(CORK, msg);

	if (n)
		n->ret = bpf_msg_cork_bytes(msg, 10);
	return SK_PASS;
}

/* A message that starts with "HDR:" loses those 4 bytes. */
SEC("sk_msg")
int pop_header(struct sk_msg_md *msg)
{
	struct note *n = count_run(POP, msg);
	char *data = (char *)(long)msg->data;
	char *data_end = (char *)(long)msg->data_end;

	if (!n || data + 4 > data_end)
		return SK_PASS;
	if (data[0] == 'H' && data[1] == 'D' && data[2] == 'R' && data[3] == ':') {
		n->ret = bpf_msg_pop_data(msg, 0, 4, 0);
		n->after = msg->size;
	}
	return SK_PASS;
}

/* Insert 4 bytes at the front of every message, then write "HDR:" into them. */
SEC("sk_msg")
int push_header(struct sk_msg_md *msg)
{
	struct note *n = count_run(PUSH, msg);
	char *data, *data_end;

	if (!n)
		return SK_PASS;
	n->ret = bpf_msg_push_data(msg, 0, 4, 0);
	if (n->ret)
		return SK_PASS;
	n->after = msg->size;
	/* After the push, data points at the 4 new bytes. */
	data = (char *)(long)msg->data;
	data_end = (char *)(long)msg->data_end;
	n->len = data_end - data;
	if (data + 4 > data_end)
		return SK_PASS;
	for (int i = 0; i < 4; i++)
		n->fresh[i] = data[i];  /* what the kernel left there */
	data[0] = 'H';
	data[1] = 'D';
	data[2] = 'R';
	data[3] = ':';
	return SK_PASS;
}

char _license[] SEC("license") = "GPL";
