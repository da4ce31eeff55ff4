// SPDX-License-Identifier: GPL-2.0
// The smallest SK_MSG program: let every message through.
// Attached to a SOCKMAP with the sk_msg_verdict attach type, it runs on each
// sendmsg() of a TCP socket in that map, before the data reaches TCP.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("sk_msg")
int pass_all(struct sk_msg_md *msg)
{
	return SK_PASS;
}

char _license[] SEC("license") = "GPL";
