// SPDX-License-Identifier: GPL-2.0
/*
 * splice-proxy: a tiny TCP proxy, the userspace half of lab 14.
 *
 *   splice-proxy LISTEN_IP:PORT BACKEND_IP:PORT
 *
 * For each client it accepts, it connects to the backend FROM the client's
 * own port (bound to the listening address), so that the two sockets' 4-tuples
 * can be computed from each other:
 *   client-facing   LISTEN_IP:PORT    <-> CLIENT_IP:P
 *   backend-facing  LISTEN_IP:P       <-> BACKEND_IP:BPORT
 * It prints both sockets with their cookie (SO_COOKIE) and their SOCKHASH key
 * as `hex:...` (the 4-tuple: addresses in network order, ports as host-order
 * u32), then sends the client one line, "spliced", and relays like any proxy:
 * whatever it reads from one socket it writes to the other, and says so.
 * When a BPF program splices the two sockets, nothing reaches the process and
 * it relays nothing. SIGUSR1 prints the total; SIGTERM prints it and exits.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef SO_COOKIE
#define SO_COOKIE 57
#endif

#define MAX_CONNS 16

struct conn {
	int client, backend;	/* -1: slot free */
	unsigned int port;	/* the client's port */
};

static struct conn conns[MAX_CONNS];
static unsigned long long relayed;	/* bytes this process read and wrote on */
static volatile sig_atomic_t report, quit;

static void on_signal(int sig)
{
	if (sig == SIGUSR1)
		report = 1;
	else
		quit = 1;
}

static int parse_addr(const char *s, struct sockaddr_in *a)
{
	char ip[32];
	const char *colon = strrchr(s, ':');

	if (!colon || colon - s >= (int)sizeof(ip))
		return -1;
	memcpy(ip, s, colon - s);
	ip[colon - s] = 0;
	memset(a, 0, sizeof(*a));
	a->sin_family = AF_INET;
	a->sin_port = htons(atoi(colon + 1));
	return inet_pton(AF_INET, ip, &a->sin_addr) == 1 ? 0 : -1;
}

/* "what: local <-> remote, cookie N, key hex:..." for one socket. */
static void describe(const char *what, int fd)
{
	struct sockaddr_in l, r;
	socklen_t ll = sizeof(l), rl = sizeof(r);
	unsigned long long cookie = 0;
	socklen_t cl = sizeof(cookie);
	struct { unsigned int local_ip4, remote_ip4, local_port, remote_port; } key;
	unsigned char *b = (unsigned char *)&key;
	char ls[INET_ADDRSTRLEN], rs[INET_ADDRSTRLEN];

	getsockname(fd, (struct sockaddr *)&l, &ll);
	getpeername(fd, (struct sockaddr *)&r, &rl);
	getsockopt(fd, SOL_SOCKET, SO_COOKIE, &cookie, &cl);
	key.local_ip4 = l.sin_addr.s_addr;	/* already network order */
	key.remote_ip4 = r.sin_addr.s_addr;
	key.local_port = ntohs(l.sin_port);	/* host order */
	key.remote_port = ntohs(r.sin_port);
	printf("%s: %s:%u <-> %s:%u, cookie %llu, key hex:", what,
	       inet_ntop(AF_INET, &l.sin_addr, ls, sizeof(ls)), key.local_port,
	       inet_ntop(AF_INET, &r.sin_addr, rs, sizeof(rs)), key.remote_port, cookie);
	for (size_t i = 0; i < sizeof(key); i++)
		printf("%02x", b[i]);
	printf("\n");
}

/* A new client: connect to the backend from the client's port, then greet the client. */
static void open_conn(int lfd, const struct sockaddr_in *me, const struct sockaddr_in *backend)
{
	struct sockaddr_in peer, from = *me;
	socklen_t pl = sizeof(peer);
	int c, b, i;

	c = accept(lfd, (struct sockaddr *)&peer, &pl);
	if (c < 0)
		return;
	for (i = 0; i < MAX_CONNS && conns[i].client >= 0; i++)
		;
	from.sin_port = peer.sin_port;	/* the client's port, on our address */
	b = socket(AF_INET, SOCK_STREAM, 0);
	if (i == MAX_CONNS || b < 0 || bind(b, (struct sockaddr *)&from, sizeof(from)) ||
	    connect(b, (const struct sockaddr *)backend, sizeof(*backend))) {
		printf("client port %u: cannot reach the backend: %s\n", ntohs(peer.sin_port), strerror(errno));
		close(c);
		if (b >= 0)
			close(b);
		return;
	}
	conns[i] = (struct conn){ .client = c, .backend = b, .port = ntohs(peer.sin_port) };
	printf("client port %u:\n", conns[i].port);
	describe("  client-facing ", c);
	describe("  backend-facing", b);
	if (write(c, "spliced\n", 8) != 8)
		printf("client port %u: cannot greet the client\n", conns[i].port);
}

static void close_conn(struct conn *k)
{
	printf("client port %u: closed\n", k->port);
	close(k->client);
	close(k->backend);
	k->client = k->backend = -1;
}

/* Data reached the process on `from`: relay it to `to`, as a proxy without BPF does. */
static void relay(struct conn *k, int from, int to, const char *dir)
{
	char buf[4096];
	ssize_t n = read(from, buf, sizeof(buf));

	if (n <= 0 || write(to, buf, n) != n) {
		close_conn(k);
		return;
	}
	relayed += n;
	printf("client port %u: relayed %zd bytes %s\n", k->port, n, dir);
}

int main(int argc, char **argv)
{
	struct sockaddr_in me, backend;
	struct pollfd pfd[1 + 2 * MAX_CONNS];
	int lfd, one = 1;

	if (argc != 3 || parse_addr(argv[1], &me) || parse_addr(argv[2], &backend)) {
		fprintf(stderr, "usage: splice-proxy LISTEN_IP:PORT BACKEND_IP:PORT\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGUSR1, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGPIPE, SIG_IGN);
	for (int i = 0; i < MAX_CONNS; i++)
		conns[i].client = conns[i].backend = -1;

	lfd = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&me, sizeof(me)) || listen(lfd, 16)) {
		perror("splice-proxy: listen");
		return 1;
	}
	printf("listening on %s, backend %s\n", argv[1], argv[2]);

	while (!quit) {
		int n = 1;

		if (report) {
			report = 0;
			printf("relayed %llu bytes in all\n", relayed);
		}
		/* Watch the listener and both sockets of every connection. */
		pfd[0] = (struct pollfd){ .fd = lfd, .events = POLLIN };
		for (int i = 0; i < MAX_CONNS; i++) {
			pfd[n++] = (struct pollfd){ .fd = conns[i].client, .events = POLLIN };
			pfd[n++] = (struct pollfd){ .fd = conns[i].backend, .events = POLLIN };
		}
		if (poll(pfd, n, -1) < 0)
			continue;	/* EINTR: a signal */
		if (pfd[0].revents)
			open_conn(lfd, &me, &backend);
		for (int i = 0; i < MAX_CONNS; i++) {
			struct conn *k = &conns[i];

			if (k->client >= 0 && pfd[1 + 2 * i].revents)
				relay(k, k->client, k->backend, "client -> backend");
			if (k->client >= 0 && pfd[2 + 2 * i].revents)
				relay(k, k->backend, k->client, "backend -> client");
		}
	}
	printf("relayed %llu bytes in all\n", relayed);
	return 0;
}
