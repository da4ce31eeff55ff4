// SPDX-License-Identifier: GPL-2.0
/*
 * maplink: attach an SK_MSG or SK_SKB verdict program to a SOCKMAP/SOCKHASH
 * through a bpf_link (BPF_LINK_CREATE), the way every newer BPF hook attaches.
 * Linux 6.10 added this for sockmaps ("bpf: Add bpf_link support for sk_msg
 * and sk_skb progs", commit 699c23f02c65); older kernels answer EINVAL.
 * Debian 12's bpftool (7.1) cannot make such a link, hence this tool.
 *
 *   maplink attach PROG_PIN MAP_PIN msg|skb LINK_PIN   make a link and pin it:
 *                                     it lives on after maplink exits
 *   maplink attach PROG_PIN MAP_PIN msg|skb - COMMAND  make a link, pin nothing,
 *                                     run COMMAND (/bin/sh -c) while we hold
 *                                     its fd, then exit: closing the last fd
 *                                     of an unpinned link detaches it
 *   maplink update LINK_PIN PROG_PIN  put another program on the link
 *   maplink detach LINK_PIN           detach the link's program from the map;
 *                                     the link itself stays, empty
 *
 * msg is the sk_msg_verdict attach type, skb the sk_skb_verdict one.
 * A failure prints the kernel's errno by name, e.g. "link_create: EBUSY".
 */
#define _GNU_SOURCE
#include <bpf/bpf.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Prints "what: ENAME (message)" for the errno of the call that just failed. */
static int fail(const char *what)
{
	int err = errno;

	printf("%s: %s (%s)\n", what, strerrorname_np(err) ?: "E?", strerror(err));
	return 1;
}

/* Opens a pinned object (program, map or link) from bpffs. */
static int get(const char *pin)
{
	int fd = bpf_obj_get(pin);

	if (fd < 0) {
		fail(pin);
		exit(1);
	}
	return fd;
}

static int link_id(int link_fd)
{
	struct bpf_link_info info = {};
	__u32 len = sizeof(info);

	return bpf_obj_get_info_by_fd(link_fd, &info, &len) ? 0 : (int)info.id;
}

static int attach(char **argv, int argc)
{
	enum bpf_attach_type type;
	int prog_fd, map_fd, link_fd, rc = 0;

	if (!strcmp(argv[4], "msg"))
		type = BPF_SK_MSG_VERDICT;
	else if (!strcmp(argv[4], "skb"))
		type = BPF_SK_SKB_VERDICT;
	else
		return printf("attach type: msg or skb\n"), 2;
	prog_fd = get(argv[2]);
	map_fd = get(argv[3]);

	/* The link's target is the map: target_fd = map_fd, as for prog attach. */
	link_fd = bpf_link_create(prog_fd, map_fd, type, NULL);
	if (link_fd < 0)
		return fail("link_create");
	printf("link %d: %s attached to %s\n", link_id(link_fd), argv[2], argv[3]);

	if (strcmp(argv[5], "-")) {
		/* A pin is one more reference: the link outlives this process. */
		if (bpf_obj_pin(link_fd, argv[5]))
			return fail("pin");
		printf("pinned at %s\n", argv[5]);
	} else if (argc > 6) {
		fflush(stdout);
		rc = system(argv[6]) ? 1 : 0;
	}
	close(link_fd); /* without a pin, this detaches the program */
	return rc;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc >= 6 && !strcmp(argv[1], "attach"))
		return attach(argv, argc);
	if (argc == 4 && !strcmp(argv[1], "update")) {
		int link_fd = get(argv[2]), prog_fd = get(argv[3]);

		/* Swaps the program in place: the map is never without one. */
		if (bpf_link_update(link_fd, prog_fd, NULL))
			return fail("link_update");
		printf("link %d now runs %s\n", link_id(link_fd), argv[3]);
		return 0;
	}
	if (argc == 3 && !strcmp(argv[1], "detach")) {
		int link_fd = get(argv[2]);

		if (bpf_link_detach(link_fd))
			return fail("link_detach");
		printf("link %d detached\n", link_id(link_fd));
		return 0;
	}
	fprintf(stderr, "usage: maplink attach PROG_PIN MAP_PIN msg|skb LINK_PIN|- [COMMAND]\n"
			"       maplink update LINK_PIN PROG_PIN\n"
			"       maplink detach LINK_PIN\n");
	return 2;
}
