// SPDX-License-Identifier: GPL-2.0
/*
 * sockmap-matrix: ask the running kernel which SOCKMAP redirects work.
 *
 * For each map type (SOCKMAP, SOCKHASH), each of the four redirect modes, and
 * each pair of socket kinds (the "in" socket whose data is steered, the "out"
 * socket that is the target), it makes fresh sockets, inserts them, sends a
 * few bytes, and looks where they arrive. Then, for the map types alone, it
 * tries to insert every kind of socket. One JSON line per probe on stdout:
 *
 *   {"probe":"redirect","map":"sockmap","mode":"send-to-local","src":"tcp",
 *    "dst":"udp","outcome":"works",...,"ms":1.42}
 *   {"probe":"insert","map":"sockhash","kind":"tcp-listen","outcome":"accepted",...}
 *
 * Outcomes of a redirect probe:
 *   works        the bytes arrived on the target socket, and nowhere else
 *   refused      a syscall failed: inserting a socket ("insert") or send()
 *                ("send"); "errno" names the error
 *   lost         no error, and no bytes anywhere: the data is gone
 *   passthrough  the bytes took their normal path (the program did not redirect)
 *   other        bytes arrived somewhere unexpected ("arrived" says where)
 *   error        the probe could not be set up (e.g. no VSOCK transport)
 *
 * The set-up of each probe (the same as the kernel's selftest
 * prog_tests/sockmap_redir.c, in our own code):
 *
 *   in0 <----> in1      in0 sits in the mode's "in" map, with the program
 *   out0 <---> out1     out0 sits in the "out" map at key 0: the target
 *
 *   send to local / send to egress (SK_MSG): in0 sends. Its program runs in
 *     sendmsg(); without it in1 would get the bytes (the "normal path").
 *   ingress to egress / ingress to local (SK_SKB): in1 sends, in0 receives,
 *     and its program runs on what arrives; without it, in0 would get them.
 *   local (BPF_F_INGRESS): the bytes must land in out0's receive queue.
 *   egress (no flag): out0 must send them, so out1 receives them.
 *
 * Options:
 *   --obj PATH      the BPF object (default: $BUILD/bpf/matrix_redir.bpf.o,
 *                   else ../bpf/matrix_redir.bpf.o next to this program)
 *   --map LIST      sockmap,sockhash            (default: both)
 *   --mode LIST     send-to-local,send-to-egress,ingress-to-egress,ingress-to-local
 *   --src LIST      in socket kinds:  tcp,udp,unix-stream,unix-dgram,vsock-stream,vsock-seqpacket
 *   --dst LIST      out socket kinds: the same
 *   --kind LIST     kinds for the insert probes (the six above and unix-seqpacket,
 *                   vsock-dgram, tcp-listen, tcp-unconnected, udp-unbound,
 *                   udp-bound, unix-stream-unconnected)
 *   --redirect-only | --insert-only
 *   --no-attach     load the programs but attach none (nothing is redirected)
 *   --wait MS       how long to wait for bytes that may still come (default 2000)
 *   --grid          after the JSON lines, print the results as tables
 *
 * VSOCK pairs need the loopback transport: modprobe vsock_loopback first.
 */
#define _GNU_SOURCE
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <linux/vm_sockets.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "socket_helpers.h"

/* ---- what is probed --------------------------------------------------- */

enum { SOCKMAP, SOCKHASH, NMAPS };
static const char *map_names[NMAPS] = { "sockmap", "sockhash" };

enum { SEND_LOCAL, SEND_EGRESS, IN_EGRESS, IN_LOCAL, NMODES };
static const char *mode_names[NMODES] = { "send-to-local", "send-to-egress", "ingress-to-egress", "ingress-to-local" };
static const char *mode_titles[NMODES] = {
	"send to local (SK_MSG, BPF_F_INGRESS)",
	"send to egress (SK_MSG, no flag)",
	"ingress to egress (SK_SKB, no flag)",
	"ingress to local (SK_SKB, BPF_F_INGRESS)",
};
/* The program of each mode, for SOCKMAP and SOCKHASH targets, and its "in" map. */
static const char *prog_names[NMAPS][NMODES] = {
	{ "send_local_map", "send_egress_map", "in_egress_map", "in_local_map" },
	{ "send_local_hash", "send_egress_hash", "in_egress_hash", "in_local_hash" },
};
static const char *in_map_names[NMAPS][NMODES] = {
	{ "in_send_local_map", "in_send_egress_map", "in_in_egress_map", "in_in_local_map" },
	{ "in_send_local_hash", "in_send_egress_hash", "in_in_egress_hash", "in_in_local_hash" },
};
static const char *out_map_names[NMAPS] = { "out_map", "out_hash" };
static const char *plain_map_names[NMAPS] = { "plain_map", "plain_hash" };

static bool is_msg(int mode) { return mode == SEND_LOCAL || mode == SEND_EGRESS; }
static bool is_local(int mode) { return mode == SEND_LOCAL || mode == IN_LOCAL; }

/* Socket kinds. The first six are the redirect kinds; all of them are insert kinds. */
#define NREDIR_KINDS 6
static const char *kinds[] = {
	"tcp", "udp", "unix-stream", "unix-dgram", "vsock-stream", "vsock-seqpacket",
	"unix-seqpacket", "vsock-dgram", "tcp-listen", "tcp-unconnected", "udp-unbound",
	"udp-bound", "unix-stream-unconnected",
};
#define NKINDS (int)(sizeof(kinds) / sizeof(kinds[0]))
static const char *short_kinds[] = { "tcp", "udp", "u-str", "u-dgr", "v-str", "v-seq" };

/* ---- results ------------------------------------------------------------- */

struct result {
	const char *outcome;
	const char *stage;   /* refused/error: socket, attach, insert-src, insert-dst, send, insert */
	int err;             /* errno, when refused or error */
	double ms;
};

static struct result redir_results[NMAPS][NMODES][NREDIR_KINDS][NREDIR_KINDS];
static bool redir_done[NMAPS][NMODES][NREDIR_KINDS][NREDIR_KINDS];
static struct result insert_results[NMAPS][NKINDS];
static bool insert_done[NMAPS][NKINDS];

/* ---- options -------------------------------------------------------------- */

static bool want_map[NMAPS], want_mode[NMODES], want_src[NKINDS], want_dst[NKINDS], want_kind[NKINDS];
static bool do_redirect = true, do_insert = true, attach = true, grid;
static int wait_ms = 2000;

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static const char *errname(int err)
{
	const char *n = strerrorname_np(err);

	return n ? n : "E?";
}

/* Marks the names in a comma-separated LIST in `want`; exits on an unknown name. */
static void parse_list(const char *opt, const char *list, const char **names, int n, bool *want)
{
	char *copy = strdup(list), *save, *t;

	for (t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		int i;

		for (i = 0; i < n && strcmp(names[i], t); i++)
			;
		if (i == n) {
			fprintf(stderr, "sockmap-matrix: %s: unknown name \"%s\"\n", opt, t);
			exit(2);
		}
		want[i] = true;
	}
	free(copy);
}

static void want_all(bool *want, int n)
{
	for (int i = 0; i < n; i++)
		want[i] = true;
}

static bool any(const bool *want, int n)
{
	for (int i = 0; i < n; i++)
		if (want[i])
			return true;
	return false;
}

/* ---- sockets ---------------------------------------------------------------- */

/* How sockmap-matrix binds: no SO_REUSEADDR, a listen backlog of 1. */
static const struct sock_setup setup = { .backlog = 1 };

/*
 * The socket an insert probe tries: fd[0] is inserted, fd[1] (if any) is
 * its peer, kept open meanwhile. Returns 0 or -errno (of socket/connect).
 */
static int make_insert_socket(const char *kind, int fd[2])
{
	struct sockaddr_storage a;
	socklen_t alen;

	fd[0] = fd[1] = -1;
	if (!strcmp(kind, "tcp-listen"))
		fd[0] = bound_socket(&setup, AF_INET, SOCK_STREAM, NULL, &a, &alen);
	else if (!strcmp(kind, "udp-bound"))
		fd[0] = bound_socket(&setup, AF_INET, SOCK_DGRAM, NULL, &a, &alen);
	else if (!strcmp(kind, "tcp-unconnected"))
		fd[0] = socket(AF_INET, SOCK_STREAM, 0);
	else if (!strcmp(kind, "udp-unbound"))
		fd[0] = socket(AF_INET, SOCK_DGRAM, 0);
	else if (!strcmp(kind, "unix-stream-unconnected"))
		fd[0] = socket(AF_UNIX, SOCK_STREAM, 0);
	else if (!strcmp(kind, "vsock-dgram"))
		fd[0] = socket(AF_VSOCK, SOCK_DGRAM, 0);
	else
		return connected_pair(&setup, kind, fd);
	return fd[0] < 0 ? -errno : 0;
}

/* ---- maps and programs -------------------------------------------------------- */

static struct bpf_object *obj;
static int in_fd[NMAPS][NMODES], out_fd[NMAPS], plain_fd[NMAPS], verdicts_fd;
static int attach_err[NMAPS][NMODES]; /* errno of a failed attach, or 0 */

static int map_fd(const char *name)
{
	struct bpf_map *m = bpf_object__find_map_by_name(obj, name);

	if (!m) {
		fprintf(stderr, "sockmap-matrix: no map %s in the object\n", name);
		exit(1);
	}
	return bpf_map__fd(m);
}

static int silent(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	return level == LIBBPF_WARN ? vfprintf(stderr, fmt, ap) : 0;
}

static void load(const char *path)
{
	libbpf_set_print(silent);
	obj = bpf_object__open_file(path, NULL);
	if (!obj) {
		fprintf(stderr, "sockmap-matrix: cannot open %s: %s (run make -C bpf)\n", path, strerror(errno));
		exit(1);
	}
	if (bpf_object__load(obj)) {
		fprintf(stderr, "sockmap-matrix: cannot load %s: %s\n", path, strerror(errno));
		exit(1);
	}
	verdicts_fd = map_fd("verdicts");
	for (int m = 0; m < NMAPS; m++) {
		out_fd[m] = map_fd(out_map_names[m]);
		plain_fd[m] = map_fd(plain_map_names[m]);
		for (int mode = 0; mode < NMODES; mode++) {
			struct bpf_program *p = bpf_object__find_program_by_name(obj, prog_names[m][mode]);
			enum bpf_attach_type at = is_msg(mode) ? BPF_SK_MSG_VERDICT : BPF_SK_SKB_VERDICT;

			if (!p) {
				fprintf(stderr, "sockmap-matrix: no program %s in %s\n", prog_names[m][mode], path);
				exit(1);
			}
			in_fd[m][mode] = map_fd(in_map_names[m][mode]);
			/* Attach before any socket goes in: a socket takes its map's programs when inserted. */
			if (attach && bpf_prog_attach(bpf_program__fd(p), in_fd[m][mode], at, 0))
				attach_err[m][mode] = errno;
		}
	}
}

/* Inserts fd at key 0 of map; returns 0 or errno. */
static int insert(int map, int fd)
{
	__u32 key = 0;
	__u64 value = fd;

	return bpf_map_update_elem(map, &key, &value, BPF_ANY) ? errno : 0;
}

static void remove_key0(int map)
{
	__u32 key = 0;

	bpf_map_delete_elem(map, &key);
}

static void read_verdicts(unsigned int *drop, unsigned int *pass)
{
	__u32 k0 = 0, k1 = 1; /* SK_DROP, SK_PASS */

	*drop = *pass = 0;
	bpf_map_lookup_elem(verdicts_fd, &k0, drop);
	bpf_map_lookup_elem(verdicts_fd, &k1, pass);
}

static void reset_verdicts(void)
{
	__u32 k0 = 0, k1 = 1, zero = 0;

	bpf_map_update_elem(verdicts_fd, &k0, &zero, BPF_ANY);
	bpf_map_update_elem(verdicts_fd, &k1, &zero, BPF_ANY);
}

/* ---- output ----------------------------------------------------------------------- */

static void json_result(const char *head, const struct result *r, const char *tail)
{
	printf("{%s,\"outcome\":\"%s\"", head, r->outcome);
	if (r->stage)
		printf(",\"stage\":\"%s\"", r->stage);
	if (r->err)
		printf(",\"errno\":\"%s\",\"error\":\"%s\"", errname(r->err), strerror(r->err));
	printf("%s,\"ms\":%.2f}\n", tail, r->ms);
	fflush(stdout);
}

/* ---- a redirect probe ---------------------------------------------------------------- */

/* VSOCK without its transport fails slowly (connect times out): remember that once. */
static int vsock_failed[NKINDS];

static const char *sock_names[4] = { "in0", "in1", "out0", "out1" };

/* Makes the pair of kind k in fd[0..1]; 0 or errno. */
static int pair_of(int k, int fd[2])
{
	bool vsock = !strncmp(kinds[k], "vsock-", 6);
	int err;

	if (vsock && vsock_failed[k])
		return vsock_failed[k];
	err = -connected_pair(&setup, kinds[k], fd);
	if (err && vsock)
		vsock_failed[k] = err;
	return err;
}

static void probe_redirect(int m, int mode, int src, int dst)
{
	static unsigned int serial;
	struct result r = { .outcome = "error" };
	int s[4] = { -1, -1, -1, -1 }, got[4] = {}, err, len, places = 0;
	/* in0 sends (SK_MSG), or in1 sends and in0 receives (SK_SKB). */
	int sender = is_msg(mode) ? 0 : 1, path = is_msg(mode) ? 1 : 0, target = is_local(mode) ? 2 : 3;
	char payload[32], buf[4][64], head[256], tail[512], arrived[64] = "";
	unsigned int drop = 0, pass = 0;
	double t0 = now_ms(), dropped_at = 0;
	bool sent = false;
	ssize_t n;

	len = snprintf(payload, sizeof(payload), "probe-%u", ++serial);
	if (attach_err[m][mode]) {
		r.stage = "attach", r.err = attach_err[m][mode];
		goto out;
	}
	if ((err = pair_of(src, &s[0])) || (err = pair_of(dst, &s[2]))) {
		r.stage = "socket", r.err = err;
		goto out;
	}
	reset_verdicts();
	r.outcome = "refused";
	if ((err = insert(in_fd[m][mode], s[0]))) {
		r.stage = "insert-src", r.err = err;
		goto out;
	}
	if ((err = insert(out_fd[m], s[2]))) {
		r.stage = "insert-dst", r.err = err;
		goto out;
	}
	struct timeval tv = { .tv_sec = 3 };
	setsockopt(s[sender], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	sent = true;
	if (send(s[sender], payload, len, MSG_NOSIGNAL) < 0) {
		r.stage = "send", r.err = errno;
		goto out;
	}

	/*
	 * Wait until the bytes show up: all of them on the target, or any on
	 * another socket. When the program dropped them (the verdict counter says
	 * SK_DROP), give them 100 ms more; else wait up to --wait ms for them.
	 */
	for (;;) {
		struct pollfd pfd[4];

		for (int i = 0; i < 4; i++)
			pfd[i] = (struct pollfd){ .fd = i == sender || got[i] < 0 ? -1 : s[i], .events = POLLIN };
		if (poll(pfd, 4, 5) > 0) {
			for (int i = 0; i < 4; i++) {
				if (!pfd[i].revents)
					continue;
				n = recv(s[i], buf[i] + got[i], sizeof(buf[i]) - 1 - got[i], MSG_DONTWAIT);
				if (n > 0)
					got[i] += n;
				else if (!(pfd[i].revents & POLLIN) || n == 0)
					got[i] = -1; /* hung up or in error, nothing to read: stop watching it */
			}
		}
		if (got[target] >= len || (got[0] > 0 || got[1] > 0 || got[5 - target] > 0))
			break;
		read_verdicts(&drop, &pass);
		if (drop && !dropped_at)
			dropped_at = now_ms();
		if (now_ms() - t0 > wait_ms || (dropped_at && now_ms() - dropped_at > 100))
			break;
	}
	/* Whatever else arrived by now, anywhere. */
	for (int i = 0; i < 4; i++) {
		if (i == sender || got[i] < 0)
			continue;
		n = recv(s[i], buf[i] + got[i], sizeof(buf[i]) - 1 - got[i], MSG_DONTWAIT);
		if (n > 0)
			got[i] += n;
	}
	for (int i = 0; i < 4; i++) {
		if (got[i] <= 0)
			continue;
		places++;
		snprintf(arrived + strlen(arrived), sizeof(arrived) - strlen(arrived), "%s\"%s\"", *arrived ? "," : "", sock_names[i]);
	}
	if (!places)
		r.outcome = "lost";
	else if (places == 1 && got[target] == len && !memcmp(buf[target], payload, len))
		r.outcome = "works";
	else if (places == 1 && got[path] == len)
		r.outcome = "passthrough";
	else
		r.outcome = "other";
out:
	read_verdicts(&drop, &pass);
	remove_key0(in_fd[m][mode]);
	remove_key0(out_fd[m]);
	close_pair(&s[0]);
	close_pair(&s[2]);
	r.ms = now_ms() - t0;
	redir_results[m][mode][src][dst] = r;
	redir_done[m][mode][src][dst] = true;

	snprintf(head, sizeof(head), "\"probe\":\"redirect\",\"map\":\"%s\",\"mode\":\"%s\",\"src\":\"%s\",\"dst\":\"%s\"",
		 map_names[m], mode_names[mode], kinds[src], kinds[dst]);
	if (sent)
		snprintf(tail, sizeof(tail), ",\"sender\":\"%s\",\"target\":\"%s\",\"path\":\"%s\",\"arrived\":[%s],\"verdict\":{\"pass\":%u,\"drop\":%u}",
			 sock_names[sender], sock_names[target], sock_names[path], arrived, pass, drop);
	else
		*tail = 0;
	json_result(head, &r, tail);
}

/* ---- an insert probe -------------------------------------------------------------------- */

static void probe_insert(int m, int k)
{
	struct result r = { .outcome = "accepted" };
	double t0 = now_ms();
	int fd[2], err;
	char head[160];

	if ((err = make_insert_socket(kinds[k], fd))) {
		/* No socket to insert: the kernel refused at socket() (or connect()). */
		r.outcome = "refused", r.stage = "socket", r.err = -err;
	} else if ((err = insert(plain_fd[m], fd[0]))) {
		r.outcome = "refused", r.stage = "insert", r.err = err;
	} else {
		remove_key0(plain_fd[m]);
	}
	close_pair(fd);
	r.ms = now_ms() - t0;
	insert_results[m][k] = r;
	insert_done[m][k] = true;
	snprintf(head, sizeof(head), "\"probe\":\"insert\",\"map\":\"%s\",\"kind\":\"%s\"", map_names[m], kinds[k]);
	json_result(head, &r, "");
}

/* ---- the grid ------------------------------------------------------------------------------- */

/* A cell: "works", "lost", "normal" (passthrough), "send EACCES", "ins EOPNOTSUPP"… */
static const char *cell(const struct result *r, char *buf, size_t len)
{
	if (!strcmp(r->outcome, "refused") || !strcmp(r->outcome, "error"))
		snprintf(buf, len, "%s%s %s", !strcmp(r->outcome, "error") ? "!" : "",
			 !strcmp(r->stage, "send") ? "send" : !strncmp(r->stage, "insert", 6) ? "ins" : r->stage, errname(r->err));
	else
		snprintf(buf, len, "%s", !strcmp(r->outcome, "passthrough") ? "normal" : r->outcome);
	return buf;
}

static void print_grid(void)
{
	char b[64];

	for (int m = 0; m < NMAPS; m++) {
		for (int mode = 0; mode < NMODES; mode++) {
			bool some = false;

			for (int i = 0; i < NREDIR_KINDS; i++)
				for (int j = 0; j < NREDIR_KINDS; j++)
					some |= redir_done[m][mode][i][j];
			if (!some)
				continue;
			printf("\n%s, %s   (row: in socket, column: out socket)\n%-8s", m == SOCKMAP ? "SOCKMAP" : "SOCKHASH", mode_titles[mode], "");
			for (int j = 0; j < NREDIR_KINDS; j++)
				if (want_dst[j])
					printf(" %-15s", short_kinds[j]);
			printf("\n");
			for (int i = 0; i < NREDIR_KINDS; i++) {
				if (!want_src[i])
					continue;
				printf("%-8s", short_kinds[i]);
				for (int j = 0; j < NREDIR_KINDS; j++)
					if (want_dst[j])
						printf(" %-15s", redir_done[m][mode][i][j] ? cell(&redir_results[m][mode][i][j], b, sizeof(b)) : "-");
				printf("\n");
			}
		}
	}
	bool some = false;

	for (int k = 0; k < NKINDS; k++)
		some |= insert_done[SOCKMAP][k] || insert_done[SOCKHASH][k];
	if (!some)
		return;
	printf("\nInsert alone (no program attached)\n%-24s", "socket");
	for (int m = 0; m < NMAPS; m++)
		if (want_map[m])
			printf(" %-22s", m == SOCKMAP ? "SOCKMAP" : "SOCKHASH");
	printf("\n");
	for (int k = 0; k < NKINDS; k++) {
		if (!want_kind[k])
			continue;
		printf("%-24s", kinds[k]);
		for (int m = 0; m < NMAPS; m++) {
			struct result *r = &insert_results[m][k];

			if (!want_map[m])
				continue;
			if (!insert_done[m][k])
				printf(" %-22s", "-");
			else if (!strcmp(r->outcome, "accepted"))
				printf(" %-22s", "accepted");
			else {
				snprintf(b, sizeof(b), "%s %s", r->stage, errname(r->err));
				printf(" %-22s", b);
			}
		}
		printf("\n");
	}
}

/* ---- main ---------------------------------------------------------------------------------------- */

static void usage(void)
{
	puts("usage: sockmap-matrix [--map LIST] [--mode LIST] [--src LIST] [--dst LIST] [--kind LIST]\n"
	     "                      [--redirect-only|--insert-only] [--no-attach] [--wait MS] [--grid] [--obj PATH]\n"
	     "One JSON line per probe: which SOCKMAP/SOCKHASH redirects and inserts this kernel takes.\n"
	     "See the top of bpf/helpers/sockmap-matrix.c.");
}

int main(int argc, char **argv)
{
	char obj_path[4096] = "";
	struct utsname u;
	double t0 = now_ms();
	int count = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		bool takes = !strcmp(a, "--obj") || !strcmp(a, "--map") || !strcmp(a, "--mode") || !strcmp(a, "--src") ||
			     !strcmp(a, "--dst") || !strcmp(a, "--kind") || !strcmp(a, "--wait");

		if (takes && !v) {
			fprintf(stderr, "sockmap-matrix: %s needs a value\n", a);
			return 2;
		}
		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			usage();
			return 0;
		} else if (!strcmp(a, "--obj"))
			snprintf(obj_path, sizeof(obj_path), "%s", v);
		else if (!strcmp(a, "--map"))
			parse_list(a, v, map_names, NMAPS, want_map);
		else if (!strcmp(a, "--mode"))
			parse_list(a, v, mode_names, NMODES, want_mode);
		else if (!strcmp(a, "--src"))
			parse_list(a, v, kinds, NREDIR_KINDS, want_src);
		else if (!strcmp(a, "--dst"))
			parse_list(a, v, kinds, NREDIR_KINDS, want_dst);
		else if (!strcmp(a, "--kind"))
			parse_list(a, v, kinds, NKINDS, want_kind);
		else if (!strcmp(a, "--wait"))
			wait_ms = atoi(v);
		else if (!strcmp(a, "--redirect-only"))
			do_insert = false;
		else if (!strcmp(a, "--insert-only"))
			do_redirect = false;
		else if (!strcmp(a, "--no-attach"))
			attach = false;
		else if (!strcmp(a, "--grid"))
			grid = true;
		else {
			fprintf(stderr, "sockmap-matrix: unknown option %s\n", a);
			usage();
			return 2;
		}
		if (takes)
			i++;
	}
	if (!any(want_map, NMAPS))
		want_all(want_map, NMAPS);
	if (!any(want_mode, NMODES))
		want_all(want_mode, NMODES);
	if (!any(want_src, NKINDS))
		want_all(want_src, NREDIR_KINDS);
	if (!any(want_dst, NKINDS))
		want_all(want_dst, NREDIR_KINDS);
	if (!any(want_kind, NKINDS))
		want_all(want_kind, NKINDS);

	if (!*obj_path) {
		const char *build = getenv("BUILD");
		char exe[2048];
		ssize_t n;

		if (build)
			snprintf(obj_path, sizeof(obj_path), "%s/bpf/matrix_redir.bpf.o", build);
		else if ((n = readlink("/proc/self/exe", exe, sizeof(exe) - 1)) > 0) {
			exe[n] = 0;
			*strrchr(exe, '/') = 0;
			snprintf(obj_path, sizeof(obj_path), "%s/../bpf/matrix_redir.bpf.o", exe);
		}
	}
	load(obj_path);
	uname(&u);
	printf("{\"probe\":\"start\",\"kernel\":\"%s\",\"machine\":\"%s\",\"attached\":%s,\"wait_ms\":%d}\n", u.release, u.machine,
	       attach ? "true" : "false", wait_ms);

	for (int m = 0; m < NMAPS && do_redirect; m++)
		for (int mode = 0; mode < NMODES; mode++)
			for (int i = 0; i < NREDIR_KINDS; i++)
				for (int j = 0; j < NREDIR_KINDS; j++)
					if (want_map[m] && want_mode[mode] && want_src[i] && want_dst[j]) {
						probe_redirect(m, mode, i, j);
						count++;
					}
	for (int m = 0; m < NMAPS && do_insert; m++)
		for (int k = 0; k < NKINDS; k++)
			if (want_map[m] && want_kind[k]) {
				probe_insert(m, k);
				count++;
			}
	printf("{\"probe\":\"end\",\"probes\":%d,\"ms\":%.1f}\n", count, now_ms() - t0);
	if (grid)
		print_grid();
	bpf_object__close(obj);
	return 0;
}
