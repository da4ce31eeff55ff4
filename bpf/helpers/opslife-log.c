// SPDX-License-Identifier: GPL-2.0
/*
 * opslife-log: print, one line each, the records lab 15's programs wrote to
 * a pinned ring buffer since the last call (reading them consumes them).
 *
 *   opslife-log /sys/fs/bpf/.../events
 *
 * A sock_ops record:
 *   ACTIVE_ESTABLISHED_CB cookie 4120 AF_INET ESTABLISHED port 40192 -> 127.0.0.1:36085 [::ffff:127.0.0.1] insert 0
 *   STATE_CB cookie 4120 AF_INET ESTABLISHED port 40192 -> ... ESTABLISHED -> FIN_WAIT1 delete 0
 * (STATE_CB runs just before the change: the socket's state is still the old one.)
 * An sk_msg record (from the policy):
 *   SK_MSG AF_INET6 port 40194 -> 192.0.2.1:1234 [::ffff:192.0.2.1] verdict SK_DROP
 * The address is remote_ip4 as the program read it, then remote_ip6 in [].
 * "insert"/"delete" is what the map operation returned (0, or an errno name).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <stdio.h>
#include <string.h>

#include "../progs/opslife_event.h"

static const char *const ops[] = {
	"VOID", "TIMEOUT_INIT", "RWND_INIT", "TCP_CONNECT_CB", "ACTIVE_ESTABLISHED_CB",
	"PASSIVE_ESTABLISHED_CB", "NEEDS_ECN", "BASE_RTT", "RTO_CB", "RETRANS_CB", "STATE_CB",
	"TCP_LISTEN_CB", "RTT_CB", "PARSE_HDR_OPT_CB", "HDR_OPT_LEN_CB", "WRITE_HDR_OPT_CB",
};

/* BPF_TCP_*: the same numbers as the kernel's TCP states */
static const char *const states[] = {
	"0", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT",
	"CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING", "NEW_SYN_RECV",
};

static const char *state(unsigned int s)
{
	return s < sizeof(states) / sizeof(states[0]) ? states[s] : "?";
}

static int print_event(void *ctx, void *data, size_t len)
{
	const struct opslife_event *e = data;
	char ip4[INET_ADDRSTRLEN], ip6[INET6_ADDRSTRLEN];
	const char *fam = e->family == 2 ? "AF_INET" : e->family == 10 ? "AF_INET6" : "AF_?";

	inet_ntop(AF_INET, &e->remote_ip4, ip4, sizeof(ip4));
	inet_ntop(AF_INET6, e->remote_ip6, ip6, sizeof(ip6));
	if (e->op == OPSLIFE_SK_MSG) {
		printf("SK_MSG %s port %u -> %s:%u [%s] verdict %s\n", fam, e->local_port, ip4,
		       e->remote_port, ip6, e->ret ? "SK_PASS" : "SK_DROP");
		return 0;
	}
	printf("%s cookie %llu %s %s port %u -> %s:%u [%s]",
	       e->op < sizeof(ops) / sizeof(ops[0]) ? ops[e->op] : "?", (unsigned long long)e->cookie,
	       fam, state(e->state), e->local_port, ip4, e->remote_port, ip6);
	if (e->op == 10 /* STATE_CB */)
		printf(" %s -> %s", state(e->args[0]), state(e->args[1]));
	if (e->ret != OPSLIFE_NO_RET)
		printf(" %s %s", e->op == 10 ? "delete" : "insert",
		       e->ret ? strerrorname_np(-e->ret) ?: "E?" : "0");
	printf("\n");
	return 0;
}

int main(int argc, char **argv)
{
	struct ring_buffer *rb;
	int fd, n;

	if (argc != 2) {
		fprintf(stderr, "usage: opslife-log PINNED_RINGBUF\n");
		return 2;
	}
	fd = bpf_obj_get(argv[1]);
	if (fd < 0) {
		perror(argv[1]);
		return 1;
	}
	rb = ring_buffer__new(fd, print_event, NULL, NULL);
	if (!rb) {
		perror("ring_buffer__new");
		return 1;
	}
	n = ring_buffer__consume(rb);	/* everything waiting, without blocking */
	if (n == 0)
		printf("(no records)\n");
	ring_buffer__free(rb);
	return n < 0;
}
