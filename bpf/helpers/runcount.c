// SPDX-License-Identifier: GPL-2.0
/*
 * runcount: print how many times a pinned BPF program has run.
 *
 *   runcount /sys/fs/bpf/prog     ->  "run_cnt 3"
 *
 * The kernel counts runs (and the time they took) only while the sysctl
 * kernel.bpf_stats_enabled is 1. `bpftool prog show` prints the same counter
 * among much else, and leaves it out while it is 0; this prints it alone,
 * always, read from the program's info (BPF_OBJ_GET_INFO_BY_FD).
 */
#include <bpf/bpf.h>
#include <stdio.h>

int main(int argc, char **argv)
{
	struct bpf_prog_info info = {};
	__u32 len = sizeof(info);
	int fd;

	if (argc != 2) {
		fprintf(stderr, "usage: runcount PROG_PIN\n");
		return 2;
	}
	fd = bpf_obj_get(argv[1]);
	if (fd < 0 || bpf_obj_get_info_by_fd(fd, &info, &len)) {
		perror(argv[1]);
		return 1;
	}
	printf("run_cnt %llu\n", (unsigned long long)info.run_cnt);
	return 0;
}
