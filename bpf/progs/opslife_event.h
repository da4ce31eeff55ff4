/* SPDX-License-Identifier: GPL-2.0 */
/*
 * opslife_event.h: the record lab 15's programs write to their ring buffer, one per
 * callback (sock_ops) or message (sk_msg), and bpf/helpers/opslife-log.c
 * prints. Shared by the BPF programs and the helper.
 */
#ifndef OPSLIFE_EVENT_H
#define OPSLIFE_EVENT_H

#include <linux/types.h>

#define OPSLIFE_SK_MSG 100	/* op of a record written by the sk_msg policy */
#define OPSLIFE_NO_RET 1	/* ret when the program made no map operation */

struct opslife_event {
	__u32 op;		/* BPF_SOCK_OPS_*, or OPSLIFE_SK_MSG */
	__u32 family;		/* AF_INET (2) or AF_INET6 (10) */
	__u32 state;		/* the socket's TCP state, BPF_TCP_* (sock_ops only) */
	__u32 local_port;	/* host byte order */
	__u32 remote_port;	/* host byte order */
	__u32 args[2];		/* STATE_CB: the old state and the new one */
	__u32 remote_ip4;	/* network byte order, as the program read it */
	__u32 remote_ip6[4];	/* network byte order, as the program read it */
	__s32 ret;		/* sock_ops: what the map insert/delete returned;
				 * sk_msg: the verdict (SK_PASS 1, SK_DROP 0) */
	__u64 cookie;		/* the socket's cookie: its key in the SOCKHASH */
};

#endif
