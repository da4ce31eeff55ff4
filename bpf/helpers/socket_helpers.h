/* SPDX-License-Identifier: GPL-2.0 */
/*
 * socket_helpers.h: the sockets socklab and sockmap-matrix make, written once.
 *
 *   bound_socket()    a socket bound where only this machine reaches it
 *                     (127.0.0.1, ::1, the local VSOCK CID, a unix address),
 *                     on a port the kernel picks, and listening unless it is
 *                     a datagram socket
 *   connected_pair()  the two ends of a connection of a kind, by name:
 *                     tcp tcp6 udp unix-stream unix-dgram unix-seqpacket
 *                     vsock-stream vsock-seqpacket
 *   close_pair()      closes what connected_pair() made
 *
 * Each tool says how it binds with a struct sock_setup (its listen backlog,
 * SO_REUSEADDR or not), so each keeps the socket options it has always had.
 *
 * On failure nothing stays open: every socket made on the way is closed, and
 * errno is the error of the call that failed. VSOCK needs a transport for the
 * local CID (modprobe vsock_loopback), else connect() fails.
 */
#ifndef SOCKET_HELPERS_H
#define SOCKET_HELPERS_H

#include <arpa/inet.h>
#include <errno.h>
#include <linux/vm_sockets.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

struct sock_setup {
	int backlog;    /* listen() backlog of stream and seqpacket sockets */
	bool reuseaddr; /* set SO_REUSEADDR before bind() */
};

/* close() that leaves errno as it was: for the clean-up after a failed call. */
static inline void close_keep_errno(int fd)
{
	int err = errno;

	if (fd >= 0)
		close(fd);
	errno = err;
}

/*
 * Fills *sun with PATH, a file system path; with PATH NULL, only the family,
 * which bind() takes as "pick an abstract name" (autobind). -1 and
 * ENAMETOOLONG when PATH does not fit.
 */
static inline int unix_address(const char *path, struct sockaddr_un *sun, socklen_t *len)
{
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	*len = offsetof(struct sockaddr_un, sun_path);
	if (!path)
		return 0;
	if (strlen(path) >= sizeof(sun->sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	strcpy(sun->sun_path, path);
	*len = sizeof(*sun);
	return 0;
}

/*
 * A socket of FAMILY and TYPE bound to this machine alone: AF_INET 127.0.0.1
 * and AF_INET6 ::1 on a free port, AF_VSOCK the local CID on a free port,
 * AF_UNIX UNIX_PATH (the caller removes an old file first) or, when it is
 * NULL, an abstract name the kernel picks. Stream and seqpacket sockets
 * listen. *addr and *alen get the address it is bound to (getsockname), for
 * a peer to connect to. Returns the fd, or -1 with errno set.
 */
static inline int bound_socket(const struct sock_setup *how, int family, int type, const char *unix_path,
			       struct sockaddr_storage *addr, socklen_t *alen)
{
	int fd, one = 1;

	memset(addr, 0, sizeof(*addr));
	switch (family) {
	case AF_INET: {
		struct sockaddr_in *in = (void *)addr;

		in->sin_family = AF_INET;
		in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		*alen = sizeof(*in);
		break;
	}
	case AF_INET6: {
		struct sockaddr_in6 *in6 = (void *)addr;

		in6->sin6_family = AF_INET6;
		in6->sin6_addr = in6addr_loopback;
		*alen = sizeof(*in6);
		break;
	}
	case AF_VSOCK: {
		struct sockaddr_vm *vm = (void *)addr;

		vm->svm_family = AF_VSOCK;
		vm->svm_cid = VMADDR_CID_LOCAL;
		vm->svm_port = VMADDR_PORT_ANY;
		*alen = sizeof(*vm);
		break;
	}
	case AF_UNIX:
		if (unix_address(unix_path, (void *)addr, alen))
			return -1;
		break;
	default:
		errno = EAFNOSUPPORT;
		return -1;
	}
	fd = socket(family, type, 0);
	if (fd < 0)
		return -1;
	if (how->reuseaddr)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (void *)addr, *alen))
		goto fail;
	*alen = sizeof(*addr);
	if (getsockname(fd, (void *)addr, alen))
		goto fail;
	if (type != SOCK_DGRAM && listen(fd, how->backlog))
		goto fail;
	return fd;
fail:
	close_keep_errno(fd);
	return -1;
}

static inline void close_pair(int fd[2])
{
	for (int i = 0; i < 2; i++)
		if (fd[i] >= 0)
			close(fd[i]);
	fd[0] = fd[1] = -1;
}

/*
 * The two ends of a connection of KIND (one of the names below):
 *   unix-*  socketpair(): fd[0] and fd[1] are alike
 *   udp     two bound sockets, each connected to the other
 *   others  fd[0] connects to a listening socket, fd[1] is what accept()
 *           returned (blocking); the listening socket is then closed
 * Returns 0, or -errno with errno set and both fds -1 (an unknown KIND:
 * EPROTONOSUPPORT).
 */
static inline int connected_pair(const struct sock_setup *how, const char *kind, int fd[2])
{
	static const struct {
		const char *name;
		int family, type;
	} pair_kinds[] = {
		{ "tcp", AF_INET, SOCK_STREAM },
		{ "tcp6", AF_INET6, SOCK_STREAM },
		{ "udp", AF_INET, SOCK_DGRAM },
		{ "unix-stream", AF_UNIX, SOCK_STREAM },
		{ "unix-dgram", AF_UNIX, SOCK_DGRAM },
		{ "unix-seqpacket", AF_UNIX, SOCK_SEQPACKET },
		{ "vsock-stream", AF_VSOCK, SOCK_STREAM },
		{ "vsock-seqpacket", AF_VSOCK, SOCK_SEQPACKET },
	}, *k = NULL;
	struct sockaddr_storage a, b;
	socklen_t alen, blen;
	int l = -1, err;

	fd[0] = fd[1] = -1;
	for (size_t i = 0; i < sizeof(pair_kinds) / sizeof(pair_kinds[0]); i++)
		if (!strcmp(pair_kinds[i].name, kind))
			k = &pair_kinds[i];
	if (!k) {
		errno = EPROTONOSUPPORT;
		return -errno;
	}
	if (k->family == AF_UNIX) {
		if (socketpair(AF_UNIX, k->type, 0, fd))
			goto fail;
		return 0;
	}
	if (k->type == SOCK_DGRAM) {
		fd[0] = bound_socket(how, k->family, k->type, NULL, &a, &alen);
		if (fd[0] < 0)
			goto fail;
		fd[1] = bound_socket(how, k->family, k->type, NULL, &b, &blen);
		if (fd[1] < 0 || connect(fd[0], (void *)&b, blen) || connect(fd[1], (void *)&a, alen))
			goto fail;
		return 0;
	}
	l = bound_socket(how, k->family, k->type, NULL, &a, &alen);
	if (l < 0)
		goto fail;
	fd[0] = socket(k->family, k->type, 0);
	if (fd[0] < 0 || connect(fd[0], (void *)&a, alen))
		goto fail;
	fd[1] = accept(l, NULL, NULL);
	if (fd[1] < 0)
		goto fail;
	close(l);
	return 0;
fail:
	err = errno;
	if (l >= 0)
		close(l);
	close_pair(fd);
	errno = err;
	return -err;
}

#endif /* SOCKET_HELPERS_H */
