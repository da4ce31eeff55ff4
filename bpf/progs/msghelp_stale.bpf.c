// SPDX-License-Identifier: GPL-2.0
// Lab 13: a program the verifier refuses. It checks data..data_end, calls
// bpf_msg_push_data(), and then writes through the pointer it had before the
// call. The push may have moved the message to other memory, so the verifier
// forgets every data pointer at the call: they must be read and checked again.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("sk_msg")
int push_stale(struct sk_msg_md *msg)
{
	char *data = (char *)(long)msg->data;
	char *data_end = (char *)(long)msg->data_end;

	if (data + 4 > data_end)
		return SK_PASS;
	if (bpf_msg_push_data(msg, 0, 4, 0))
		return SK_PASS;
	data[0] = 'H';	/* a pointer from before the push: refused at load time */
	return SK_PASS;
}

char _license[] SEC("license") = "GPL";
