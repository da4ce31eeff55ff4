// SPDX-License-Identifier: GPL-2.0
/*
 * socklab: make sockets, put them in a SOCKMAP/SOCKHASH, send data, and see
 * where it arrives -- one small command per line. The shell cannot do these
 * (insert a socket fd into a BPF map, read SO_COOKIE, pass an fd with
 * SCM_RIGHTS, open AF_VSOCK), so the labs use this tool.
 *
 *   socklab 'use /sys/fs/bpf/sockmap' 'pair a tcp' 'insert a1 0' 'send a0 hi' 'poll'
 *   socklab < script          # or one command per line on stdin
 *
 * Commands (SOCK is a name made by `pair` or `socket`):
 *   use MAP_PIN               later map commands work on this pinned map
 *   pair NAME KIND            NAME0 <-> NAME1, connected: tcp tcp6 udp unix-stream
 *                             unix-dgram unix-seqpacket vsock-stream vsock-seqpacket
 *                             (NAME0 is the active/client side, NAME1 the accepted one)
 *   socket NAME KIND          one socket: tcp (fresh) tcp-listen udp (unbound) udp-bound
 *                             unix-stream unix-dgram unix-seqpacket vsock-stream vsock-dgram
 *   insert SOCK KEY           map[KEY] = SOCK (KEY: a number, hex:0a0b.., or tuple)
 *   delete KEY | lookup KEY   delete the entry | print the socket cookie stored at KEY
 *   cookie SOCK               print the socket's cookie (getsockopt SO_COOKIE)
 *   send SOCK TEXT            send TEXT on SOCK
 *   sendhex SOCK HEX          send the bytes HEX on SOCK, in one send(): two hex digits
 *                             a byte, spaces ignored ("sendhex a0 0002 6869" sends 4 bytes)
 *   fill SOCK N               send N bytes "abcd...xyzabc..." (byte i is 'a' + i % 26) in one
 *                             send(), e.g. a message larger than a page
 *   recv SOCK [MS]            wait up to MS ms (default 500) for data on SOCK
 *   poll [MS]                 after MS ms (default 300), show what each socket has received
 *   fionread SOCK             bytes waiting to be read (ioctl FIONREAD)
 *   tcpinfo SOCK              bytes TCP itself sent and received on SOCK (TCP_INFO):
 *                             0 while a redirect carries the data past TCP
 *   close SOCK | shutdown SOCK | disconnect SOCK (connect to AF_UNSPEC)
 *   send-fd SOCK UNIX_PATH KEY   hand SOCK to a map owner (SCM_RIGHTS) to insert at KEY
 *   serve-fds UNIX_PATH       be the map owner: insert every socket handed over, forever
 *   tls SOCK tx|rx            turn on kernel TLS (kTLS) on a TCP socket for sending (tx)
 *                             or receiving (rx): the "tls" ULP, then a TLS 1.2 AES-GCM-128
 *                             key -- a fixed, fake one, the same for every socket
 *   recvhex SOCK [MS]         like recv, but print the first 16 bytes in hex (for TLS records)
 *   sleep MS | hold           pause | keep every socket open until killed
 *   sh COMMAND                run COMMAND (/bin/sh -c) while the sockets stay open, e.g.
 *                             attach a program between two inserts; fails if it fails
 *
 * A `!` before a command means it must fail: its errno is printed and the
 * script goes on. Otherwise the first failing command stops the script, exit 1.
 *
 * Keys: a number is a 4-byte key (SOCKMAP index); "tuple" is the socket's own
 * 4-tuple as struct { u32 local_ip4, remote_ip4 (network order); u32
 * local_port, remote_port (host order) }: 16 bytes, for a SOCKHASH.
 * "cookie:SOCK" is the open socket SOCK's cookie as an 8-byte key, for a
 * SOCKHASH keyed by cookie (lookup cookie:a0).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <bpf/bpf.h>
#include <errno.h>
#include <linux/tcp.h>
#include <linux/tls.h>
#include <linux/vm_sockets.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "socket_helpers.h"

#ifndef SO_COOKIE
#define SO_COOKIE 57
#endif

#define MAX_SOCKS 64

struct sock {
	char name[32];
	int fd;
	char kind[32];
};

static struct sock socks[MAX_SOCKS];
static int nsocks;
static int map_fd = -1;
static char map_path[256];
static unsigned int map_key_size, map_value_size;
static bool expect_failure; /* the current command began with '!' */
static bool failed;         /* ...and it did fail */

/* ---- output --------------------------------------------------------- */

/* Every command prints one line: "<command>: <result>". */
static void say(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	printf("%s: ", cmd);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

/* Reports a failed syscall as "ENAME (message)"; returns -1 unless the failure was expected. */
static int fail_errno(const char *cmd, int err)
{
	printf("%s: %s (%s)\n", cmd, strerrorname_np(err) ?: "E?", strerror(err));
	fflush(stdout);
	failed = true;
	return expect_failure ? 0 : -1;
}

static int fail(const char *cmd, const char *msg)
{
	printf("%s: error: %s\n", cmd, msg);
	fflush(stdout);
	return -1;
}

/* ---- sockets -------------------------------------------------------- */

static struct sock *find(const char *name)
{
	for (int i = 0; i < nsocks; i++)
		if (!strcmp(socks[i].name, name) && socks[i].fd >= 0)
			return &socks[i];
	return NULL;
}

static void add(const char *name, const char *suffix, int fd, const char *kind)
{
	struct sock *s = &socks[nsocks < MAX_SOCKS ? nsocks++ : MAX_SOCKS - 1];

	snprintf(s->name, sizeof(s->name), "%s%s", name, suffix);
	snprintf(s->kind, sizeof(s->kind), "%s", kind);
	s->fd = fd;
}

/* "127.0.0.1:4242", "[::1]:4242", "cid 1 port 1024", "unix" */
static const char *addr_str(const struct sockaddr_storage *ss, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN];

	switch (ss->ss_family) {
	case AF_INET: {
		const struct sockaddr_in *in = (const void *)ss;
		inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
		snprintf(buf, len, "%s:%u", ip, ntohs(in->sin_port));
		break;
	}
	case AF_INET6: {
		const struct sockaddr_in6 *in6 = (const void *)ss;
		inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
		snprintf(buf, len, "[%s]:%u", ip, ntohs(in6->sin6_port));
		break;
	}
	case AF_VSOCK: {
		const struct sockaddr_vm *vm = (const void *)ss;
		snprintf(buf, len, "cid %u port %u", vm->svm_cid, vm->svm_port);
		break;
	}
	default:
		snprintf(buf, len, "unix");
	}
	return buf;
}

static const char *local_str(int fd, char *buf, size_t len)
{
	struct sockaddr_storage ss = {};
	socklen_t sl = sizeof(ss);

	if (getsockname(fd, (void *)&ss, &sl))
		return "?";
	return addr_str(&ss, buf, len);
}

/* How socklab binds: SO_REUSEADDR, and a listen backlog of 8. */
static const struct sock_setup setup = { .backlog = 8, .reuseaddr = true };

static int make_one(const char *kind)
{
	struct sockaddr_storage addr;
	socklen_t alen;

	if (!strcmp(kind, "tcp"))
		return socket(AF_INET, SOCK_STREAM, 0);
	if (!strcmp(kind, "tcp-listen"))
		return bound_socket(&setup, AF_INET, SOCK_STREAM, NULL, &addr, &alen);
	if (!strcmp(kind, "udp"))
		return socket(AF_INET, SOCK_DGRAM, 0);
	if (!strcmp(kind, "udp-bound"))
		return bound_socket(&setup, AF_INET, SOCK_DGRAM, NULL, &addr, &alen);
	if (!strcmp(kind, "unix-stream"))
		return socket(AF_UNIX, SOCK_STREAM, 0);
	if (!strcmp(kind, "unix-dgram"))
		return socket(AF_UNIX, SOCK_DGRAM, 0);
	if (!strcmp(kind, "unix-seqpacket"))
		return socket(AF_UNIX, SOCK_SEQPACKET, 0);
	if (!strcmp(kind, "vsock-stream"))
		return socket(AF_VSOCK, SOCK_STREAM, 0);
	if (!strcmp(kind, "vsock-dgram"))
		return socket(AF_VSOCK, SOCK_DGRAM, 0);
	errno = EPROTONOSUPPORT;
	return -1;
}

/* ---- map keys ------------------------------------------------------- */

struct tuple_key {
	__u32 local_ip4;   /* network byte order */
	__u32 remote_ip4;  /* network byte order */
	__u32 local_port;  /* host byte order */
	__u32 remote_port; /* host byte order */
};

/* Parses KEY into buf (map_key_size bytes); SOCK is needed for "tuple". */
static int parse_key(const char *cmd, const char *key, struct sock *s, unsigned char *buf)
{
	memset(buf, 0, 64);
	if (!strncmp(key, "hex:", 4)) {
		size_t n = strlen(key + 4) / 2;

		if (n != map_key_size)
			return fail(cmd, "hex key length differs from the map's key size");
		for (size_t i = 0; i < n; i++)
			sscanf(key + 4 + 2 * i, "%2hhx", &buf[i]);
		return 0;
	}
	if (!strncmp(key, "cookie:", 7)) {
		struct sock *c = find(key + 7);
		__u64 cookie = 0;
		socklen_t cl = sizeof(cookie);

		if (!c || getsockopt(c->fd, SOL_SOCKET, SO_COOKIE, &cookie, &cl))
			return fail(cmd, "cookie:SOCK needs an open socket SOCK");
		if (map_key_size != sizeof(cookie))
			return fail(cmd, "a cookie key is 8 bytes; the map's key size differs");
		memcpy(buf, &cookie, sizeof(cookie));
		return 0;
	}
	if (!strcmp(key, "tuple")) {
		struct sockaddr_in l = {}, r = {};
		socklen_t ll = sizeof(l), rl = sizeof(r);
		struct tuple_key t;

		if (!s || getsockname(s->fd, (void *)&l, &ll) || getpeername(s->fd, (void *)&r, &rl) || l.sin_family != AF_INET)
			return fail(cmd, "a tuple key needs a connected IPv4 socket");
		t.local_ip4 = l.sin_addr.s_addr;
		t.remote_ip4 = r.sin_addr.s_addr;
		t.local_port = ntohs(l.sin_port);
		t.remote_port = ntohs(r.sin_port);
		if (map_key_size != sizeof(t))
			return fail(cmd, "a tuple key is 16 bytes; the map's key size differs");
		memcpy(buf, &t, sizeof(t));
		return 0;
	}
	char *end;
	unsigned long v = strtoul(key, &end, 0);
	if (*end)
		return fail(cmd, "a key is a number, hex:<bytes> or tuple");
	__u32 k = v;
	memcpy(buf, &k, sizeof(k));
	return 0;
}

/*
 * Inserts fd at key. The value is the socket's fd, as a u64 when the map's
 * value size is 8 (the kernel reads all 8 bytes) and a u32 when it is 4.
 */
static int map_insert(const void *key, int fd)
{
	__u64 fd64 = fd;
	__u32 fd32 = fd;

	return bpf_map_update_elem(map_fd, key, map_value_size == 8 ? (void *)&fd64 : (void *)&fd32, BPF_ANY);
}

static int need_map(const char *cmd)
{
	return map_fd < 0 ? fail(cmd, "no map yet: start with 'use /sys/fs/bpf/…'") : 0;
}

/* ---- fd handover (SCM_RIGHTS) ----------------------------------------- */

/* Sends `fd` over a fresh connection to `path`, with the key as the message text. */
static int send_fd(const char *path, int fd, const char *key)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} ctl = {};
	struct iovec iov = { .iov_base = (void *)key, .iov_len = strlen(key) };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof(ctl.buf) };
	struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
	struct sockaddr_un sun;
	socklen_t sl;
	char ack[128] = "";
	int c, n;

	if (unix_address(path, &sun, &sl))
		return -1;
	c = socket(AF_UNIX, SOCK_STREAM, 0);
	if (c < 0)
		return -1;
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	if (connect(c, (void *)&sun, sl) || sendmsg(c, &msg, 0) < 0) {
		close_keep_errno(c);
		return -1;
	}
	n = read(c, ack, sizeof(ack) - 1); /* the owner answers with what it did */
	close(c);
	if (n > 0)
		printf("  owner says: %.*s\n", n, ack);
	return 0;
}

/* The map owner: accepts handed-over sockets forever and inserts each at the key sent with it. */
static int serve_fds(const char *cmd, const char *path)
{
	static const struct sock_setup owner = { .backlog = 8 }; /* no SO_REUSEADDR */
	struct sockaddr_storage addr;
	socklen_t alen;
	int l;

	if (need_map(cmd))
		return -1;
	unlink(path);
	l = bound_socket(&owner, AF_UNIX, SOCK_STREAM, path, &addr, &alen);
	if (l < 0)
		return fail_errno(cmd, errno) ? -1 : -1;
	say(cmd, "owner of %s, waiting for sockets on %s", map_path, path);
	for (;;) {
		union {
			char buf[CMSG_SPACE(sizeof(int))];
			struct cmsghdr align;
		} ctl = {};
		char key[64] = "", ack[160];
		unsigned char kbuf[64];
		struct iovec iov = { .iov_base = key, .iov_len = sizeof(key) - 1 };
		struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof(ctl.buf) };
		struct cmsghdr *cm;
		int c = accept(l, NULL, NULL), fd = -1;
		__u64 cookie = 0;
		socklen_t cl = sizeof(cookie);

		if (c < 0)
			continue;
		if (recvmsg(c, &msg, 0) > 0 && (cm = CMSG_FIRSTHDR(&msg)) && cm->cmsg_type == SCM_RIGHTS)
			memcpy(&fd, CMSG_DATA(cm), sizeof(int));
		if (fd < 0) {
			snprintf(ack, sizeof(ack), "no fd received");
		} else if (parse_key(cmd, key, NULL, kbuf)) {
			snprintf(ack, sizeof(ack), "bad key %s", key);
		} else if (map_insert(kbuf, fd)) {
			snprintf(ack, sizeof(ack), "insert at %s: %s (%s)", key, strerrorname_np(errno), strerror(errno));
		} else {
			getsockopt(fd, SOL_SOCKET, SO_COOKIE, &cookie, &cl);
			snprintf(ack, sizeof(ack), "inserted at %s, cookie %llu", key, (unsigned long long)cookie);
		}
		say(cmd, "received fd %d: %s", fd, ack);
		if (write(c, ack, strlen(ack)) < 0)
			perror("write");
		close(c);
		/* Keep our copy open: the socket stays in the map while any copy lives. */
	}
}

/* ---- receiving ------------------------------------------------------- */

/* Reads whatever is waiting on s (non-blocking) into buf; returns the byte count. */
static int drain(struct sock *s, char *buf, int len)
{
	int total = 0, n;

	while (total < len - 1 && (n = recv(s->fd, buf + total, len - 1 - total, MSG_DONTWAIT)) > 0)
		total += n;
	buf[total] = 0;
	return total;
}

/* Shows up to 60 bytes; a byte that is not printable ASCII as \xNN (\x00\x05 for 0005). */
static void show_data(const char *name, const char *buf, int n)
{
	if (n <= 0) {
		printf("  %-8s nothing\n", name);
		return;
	}
	printf("  %-8s \"", name);
	for (int i = 0; i < n && i < 60; i++)
		printf(isprint((unsigned char)buf[i]) ? "%c" : "\\x%02x", (unsigned char)buf[i]);
	printf("\" (%d bytes)\n", n);
}

/* ---- kernel TLS ------------------------------------------------------ */

/*
 * Turns on kTLS for one direction of a connected TCP socket: first the "tls"
 * upper layer protocol (ULP) -- once per socket --, then the keys. A real
 * program gets its keys from a TLS handshake; ours are fixed and fake, and the
 * same on every socket, so that "tls a0 tx" and "tls a1 rx" understand each
 * other. On failure, *stage names the setsockopt() that failed.
 */
static int set_tls(int fd, bool tx, const char **stage)
{
	struct tls12_crypto_info_aes_gcm_128 ci = {
		.info = { .version = TLS_1_2_VERSION, .cipher_type = TLS_CIPHER_AES_GCM_128 },
	};
	char ulp[16] = "";
	socklen_t ul = sizeof(ulp);

	memcpy(ci.key, "FAKE-KEY-NOT-TLS", sizeof(ci.key)); /* 16 bytes */
	memcpy(ci.salt, "salt", sizeof(ci.salt));           /* 4 bytes */
	memcpy(ci.iv, "fake--iv", sizeof(ci.iv));           /* 8 bytes */
	/* ci.rec_seq stays 0: the first record of the connection */

	*stage = "TCP_ULP";
	getsockopt(fd, IPPROTO_TCP, TCP_ULP, ulp, &ul); /* "" while there is no ULP */
	if (strcmp(ulp, "tls") && setsockopt(fd, IPPROTO_TCP, TCP_ULP, "tls", strlen("tls")))
		return -1;
	*stage = tx ? "TLS_TX" : "TLS_RX";
	return setsockopt(fd, SOL_TLS, tx ? TLS_TX : TLS_RX, &ci, sizeof(ci));
}

/* ---- the command loop -------------------------------------------------- */

static int run_command(char *line)
{
	char *argv[8] = {}, *save, cmd[512], buf[4096];
	unsigned char key[64];
	int argc = 0;
	struct sock *s;

	line[strcspn(line, "\n")] = 0;
	while (*line == ' ' || *line == '\t')
		line++;
	if (!*line || *line == '#')
		return 0;
	expect_failure = *line == '!';
	if (expect_failure)
		for (line++; *line == ' '; line++)
			;
	snprintf(cmd, sizeof(cmd), "%s%s", expect_failure ? "! " : "", line);
	/* The last argument of "send", and the COMMAND of "sh", is the rest of the line, spaces included. */
	for (char *t = strtok_r(line, " \t", &save); t && argc < 8; t = strtok_r(NULL, (argc == 2 && (!strcmp(argv[0], "send") || !strcmp(argv[0], "sendhex"))) || (argc == 1 && !strcmp(argv[0], "sh")) ? "" : " \t", &save))
		argv[argc++] = t;

	const char *op = argv[0];
	s = argc > 1 ? find(argv[1]) : NULL;
	bool wants_sock = !strcmp(op, "insert") || !strcmp(op, "cookie") || !strcmp(op, "send") || !strcmp(op, "sendhex") || !strcmp(op, "recv") ||
			  !strcmp(op, "fionread") || !strcmp(op, "tcpinfo") || !strcmp(op, "close") || !strcmp(op, "shutdown") ||
			  !strcmp(op, "disconnect") || !strcmp(op, "send-fd") || !strcmp(op, "tls") || !strcmp(op, "recvhex") ||
			  !strcmp(op, "fill");
	if (wants_sock && !s)
		return fail(cmd, argc > 1 ? "no such socket" : "which socket?");

	if (!strcmp(op, "use") && argc == 2) {
		struct bpf_map_info info = {};
		__u32 len = sizeof(info);

		if (map_fd >= 0)
			close(map_fd);
		map_fd = bpf_obj_get(argv[1]);
		if (map_fd < 0)
			return fail_errno(cmd, errno);
		bpf_obj_get_info_by_fd(map_fd, &info, &len);
		map_key_size = info.key_size;
		map_value_size = info.value_size;
		snprintf(map_path, sizeof(map_path), "%s", argv[1]);
		say(cmd, "map id %u, key %uB, value %uB, %u entries", info.id, info.key_size, info.value_size, info.max_entries);
	} else if (!strcmp(op, "pair") && argc == 3) {
		int fd[2];
		char a[96], b[96];

		if (connected_pair(&setup, argv[2], fd))
			return fail_errno(cmd, errno);
		add(argv[1], "0", fd[0], argv[2]);
		add(argv[1], "1", fd[1], argv[2]);
		say(cmd, "%s0 %s <-> %s1 %s", argv[1], local_str(fd[0], a, sizeof(a)), argv[1], local_str(fd[1], b, sizeof(b)));
	} else if (!strcmp(op, "socket") && argc == 3) {
		int fd = make_one(argv[2]);
		char a[96];

		if (fd < 0)
			return fail_errno(cmd, errno);
		add(argv[1], "", fd, argv[2]);
		say(cmd, "%s %s", argv[1], local_str(fd, a, sizeof(a)));
	} else if (!strcmp(op, "insert") && argc == 3) {
		__u64 cookie = 0;
		socklen_t cl = sizeof(cookie);

		if (need_map(cmd) || parse_key(cmd, argv[2], s, key))
			return -1;
		if (map_insert(key, s->fd))
			return fail_errno(cmd, errno);
		getsockopt(s->fd, SOL_SOCKET, SO_COOKIE, &cookie, &cl);
		say(cmd, "ok, cookie %llu", (unsigned long long)cookie);
	} else if ((!strcmp(op, "delete") || !strcmp(op, "lookup")) && argc == 2) {
		__u64 value = 0;

		if (need_map(cmd) || parse_key(cmd, argv[1], NULL, key))
			return -1;
		if (op[0] == 'd' ? bpf_map_delete_elem(map_fd, key) : bpf_map_lookup_elem(map_fd, key, &value))
			return fail_errno(cmd, errno);
		if (op[0] == 'd')
			say(cmd, "ok");
		else
			say(cmd, "cookie %llu", (unsigned long long)value);
	} else if (!strcmp(op, "cookie")) {
		__u64 cookie = 0;
		socklen_t cl = sizeof(cookie);

		if (getsockopt(s->fd, SOL_SOCKET, SO_COOKIE, &cookie, &cl))
			return fail_errno(cmd, errno);
		say(cmd, "%llu", (unsigned long long)cookie);
	} else if (!strcmp(op, "send") && argc == 3) {
		ssize_t n = send(s->fd, argv[2], strlen(argv[2]), MSG_NOSIGNAL);

		if (n < 0)
			return fail_errno(cmd, errno);
		say(cmd, "%zd bytes", n);
	} else if (!strcmp(op, "sendhex") && argc == 3) {
		int len = 0;
		ssize_t n;

		/* Two hex digits a byte; spaces between bytes are ignored. */
		for (const char *h = argv[2]; *h && len < (int)sizeof(buf); h++) {
			if (*h == ' ')
				continue;
			if (!isxdigit(h[0]) || !isxdigit(h[1]) || sscanf(h++, "%2hhx", (unsigned char *)&buf[len++]) != 1)
				return fail(cmd, "HEX: two hex digits a byte");
		}
		n = send(s->fd, buf, len, MSG_NOSIGNAL);
		if (n < 0)
			return fail_errno(cmd, errno);
		if (strlen(cmd) > 60) /* a long message: echo its start only */
			strcpy(cmd + 56, "...");
		say(cmd, "%zd bytes", n);
	} else if (!strcmp(op, "fill") && argc == 3) {
		int len = atoi(argv[2]);
		char *big = len > 0 ? malloc(len) : NULL;
		ssize_t n;

		if (!big)
			return fail(cmd, "N: a number of bytes, 1 or more");
		for (int i = 0; i < len; i++)
			big[i] = 'a' + i % 26;
		n = send(s->fd, big, len, MSG_NOSIGNAL);
		free(big);
		if (n < 0)
			return fail_errno(cmd, errno);
		say(cmd, "%zd bytes", n);
	} else if (!strcmp(op, "recv")) {
		struct pollfd pfd = { .fd = s->fd, .events = POLLIN };
		int n = 0;

		if (poll(&pfd, 1, argc > 2 ? atoi(argv[2]) : 500) > 0)
			n = drain(s, buf, sizeof(buf));
		printf("%s:\n", cmd);
		show_data(s->name, buf, n);
	} else if (!strcmp(op, "poll")) {
		usleep((argc > 1 ? atoi(argv[1]) : 300) * 1000);
		printf("%s:\n", cmd);
		for (int i = 0; i < nsocks; i++)
			if (socks[i].fd >= 0 && strcmp(socks[i].kind, "tcp-listen"))
				show_data(socks[i].name, buf, drain(&socks[i], buf, sizeof(buf)));
	} else if (!strcmp(op, "recvhex")) {
		struct pollfd pfd = { .fd = s->fd, .events = POLLIN };
		int n = 0;

		if (poll(&pfd, 1, argc > 2 ? atoi(argv[2]) : 500) > 0)
			n = drain(s, buf, sizeof(buf));
		printf("%s: %d bytes", cmd, n);
		for (int i = 0; i < n && i < 16; i++)
			printf(" %02x", (unsigned char)buf[i]);
		printf("%s\n", n > 16 ? " ..." : "");
	} else if (!strcmp(op, "tls") && argc == 3 && (!strcmp(argv[2], "tx") || !strcmp(argv[2], "rx"))) {
		const char *stage;

		char what[sizeof(cmd) + 16];

		if (set_tls(s->fd, argv[2][0] == 't', &stage)) {
			snprintf(what, sizeof(what), "%s: %s", cmd, stage); /* "tls a0 tx: TCP_ULP: EEXIST ..." */
			return fail_errno(what, errno);
		}
		say(cmd, "ok, kTLS %s on", argv[2][0] == 't' ? "TLS_TX" : "TLS_RX");
	} else if (!strcmp(op, "fionread")) {
		int n = 0;

		if (ioctl(s->fd, FIONREAD, &n))
			return fail_errno(cmd, errno);
		say(cmd, "%d bytes waiting", n);
	} else if (!strcmp(op, "tcpinfo")) {
		struct tcp_info ti = {};
		socklen_t tl = sizeof(ti);

		if (getsockopt(s->fd, IPPROTO_TCP, TCP_INFO, &ti, &tl))
			return fail_errno(cmd, errno);
		say(cmd, "bytes_sent %llu, bytes_received %llu", (unsigned long long)ti.tcpi_bytes_sent,
		    (unsigned long long)ti.tcpi_bytes_received);
	} else if (!strcmp(op, "close")) {
		close(s->fd);
		s->fd = -1;
		say(cmd, "closed");
	} else if (!strcmp(op, "shutdown")) {
		if (shutdown(s->fd, SHUT_RDWR))
			return fail_errno(cmd, errno);
		say(cmd, "ok");
	} else if (!strcmp(op, "disconnect")) {
		struct sockaddr unspec = { .sa_family = AF_UNSPEC };

		if (connect(s->fd, &unspec, sizeof(unspec)))
			return fail_errno(cmd, errno);
		say(cmd, "ok");
	} else if (!strcmp(op, "send-fd") && argc == 4) {
		printf("%s:\n", cmd);
		if (send_fd(argv[2], s->fd, argv[3]))
			return fail_errno(cmd, errno);
	} else if (!strcmp(op, "serve-fds") && argc == 2) {
		return serve_fds(cmd, argv[1]);
	} else if (!strcmp(op, "sleep") && argc == 2) {
		usleep(atoi(argv[1]) * 1000);
	} else if (!strcmp(op, "sh") && argc == 2) {
		int rc;

		printf("%s:\n", cmd);
		fflush(stdout);
		rc = system(argv[1]);
		if (rc != 0)
			return fail(cmd, "the command failed");
	} else if (!strcmp(op, "hold")) {
		say(cmd, "holding %d sockets until killed", nsocks);
		for (;;)
			pause();
	} else {
		return fail(cmd, "unknown command or wrong arguments (see the top of bpf/helpers/socklab.c)");
	}
	return 0;
}

/* Runs one line; a '!' command that succeeded is itself a failure. */
static int run(char *line)
{
	failed = false;
	expect_failure = false;
	if (run_command(line))
		return -1;
	if (expect_failure && !failed) {
		printf("error: the command above succeeded, but it should have failed\n");
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	char line[1024];

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc > 1 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
		puts("usage: socklab 'command' ['command' ...]   or   socklab < script\n"
		     "commands: use pair socket insert delete lookup cookie send sendhex recv poll fionread\n"
		     "          tcpinfo close shutdown disconnect send-fd serve-fds sleep hold sh tls recvhex (see bpf/helpers/socklab.c)");
		return 0;
	}
	if (argc > 1) {
		for (int i = 1; i < argc; i++) {
			snprintf(line, sizeof(line), "%s", argv[i]);
			if (run(line))
				return 1;
		}
		return 0;
	}
	while (fgets(line, sizeof(line), stdin))
		if (run(line))
			return 1;
	return 0;
}
