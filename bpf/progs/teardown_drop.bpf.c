// SPDX-License-Identifier: GPL-2.0
// A policy that refuses every message: attached to a SOCKMAP as sk_msg_verdict,
// it runs on each sendmsg() of a TCP socket in the map and drops the data, so
// the sender's send()/write() fails with EACCES. Lab 09 uses it as a signal:
// while a send fails, the socket is still under the map's programs; once a
// send goes through, the socket is back to plain TCP.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("sk_msg")
int teardown_drop(struct sk_msg_md *msg)
{
	return SK_DROP;
}

char _license[] SEC("license") = "GPL";
