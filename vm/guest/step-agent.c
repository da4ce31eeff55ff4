// step-agent: runs lab steps for the runner, many over one stream.
// The guest half of the runner's step transport (vm/step-agent.ts is the
// host half), kept beside the guest's init; bpf/Makefile builds it, with no
// libbpf, to build/bin/step-agent, which the guest runs.
//
// Starting a command over SSH costs a new channel, a session process in sshd
// and a login shell before the step's own bash even starts: about 0.3 s per
// step in an emulated guest. The runner instead talks to this agent and sends
// it the steps; the agent forks each one straight into its own session (so
// its whole process group can be killed) and streams its output back. A step
// costs one fork and one exec.
//
// Two ways to meet the runner:
//   step-agent               over stdin/stdout, one runner (an SSH channel, a
//                            test's pipes): says hello at once, exits when stdin closes.
//   step-agent --serve PORT  over a virtio-serial port (QEMU's end of it is a unix
//                            socket on the host; vm/serial.ts): no SSH, no network.
//                            Serves one runner after another, for ever; waits while
//                            no host is connected. PORT may also be a unix socket,
//                            which the agent connects to, once per runner (the tests'
//                            stand-in for a port).
//
// Frames in both directions: 1 byte type, 4 bytes id, 4 bytes payload length
// (little-endian), then the payload.
//   runner -> agent   'R' id argv     run argv (NUL-terminated strings) as step id
//                     'K' id          kill step id's process group (TERM, then KILL)
//                     'H' 0  nonce    a new runner (--serve): end whatever ran before,
//                                     answer 'H' with "nonce version release" (the
//                                     kernel's, as `uname -r` would print it: one
//                                     step less for a runner that starts a VM)
//                     'Q' 0           the runner leaves: kill its steps now
//   agent -> runner   'H' 0  version  the agent is ready (on stdin/stdout: at once)
//                     'B' 0           (--serve --restarted) a new agent took the port:
//                                     the one serving this runner died with its steps
//                     'O' id bytes    the step wrote to stdout
//                     'E' id bytes    the step wrote to stderr
//                     'X' id int32    the step ended: exit code, or 128 + signal
// A step's argv[0] "bash" runs Debian's static build of the same bash when the
// guest has it (bash-static): no dynamic loading saves ~70 ms per step under TCG.
// A step has ended when its first process has exited and both of its output
// pipes are closed (as an SSH channel would close). When the runner goes away
// (stdin closes; the port's host side disconnects), every running step's group
// is killed.
//
// A port has no end-of-stream of its own: while no host is connected, poll()
// reports POLLHUP, read() returns 0 and write() would block
// (drivers/char/virtio_console.c); the driver sends SIGIO when the host comes
// or goes. The guest learns of it late, on a queue apart from the data: a
// runner that leaves and another that comes at once can look like one
// connection, and the news that the last one left can come after the next
// one's first bytes. So the host side counts as gone only once it stays away
// for RECONNECT_GRACE_MS; and a runner starts with 'H', which ends whatever
// the last one left running, and waits for its own nonce back, skipping what
// the last runner's steps still sent.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define AGENT_VERSION "2"
#define MAX_STEPS 64
#define MAX_PAYLOAD (4u << 20)
#define MAX_NONCE 128
#define KILL_GRACE_MS 300  /* TERM, then KILL this much later */
#define ABANDON_MS 1500    /* after a kill, stop waiting for pipes held elsewhere */
#define RECONNECT_GRACE_MS 250 /* a port's host side away this long: its runner is gone */

struct step {
	int used;
	uint32_t id;
	pid_t pid;          /* also the process group id */
	int out, err;       /* read ends, -1 once closed */
	int exited, status;
	int64_t term_at;    /* when TERM was sent, 0 if never */
	int killed;         /* KILL sent */
};

static struct step steps[MAX_STEPS];
static const char *static_bash; /* the same bash, statically linked, if installed */
static sigset_t blocked;        /* SIGCHLD and SIGIO: read from sfd, not delivered */
static int sfd;

/* The runner's end: stdin/stdout, or the port (one fd both ways). */
static int in_fd = STDIN_FILENO, out_fd = STDOUT_FILENO;
static int on_port;     /* in_fd is a virtio-serial port: its host side comes and goes */
static int runner_gone; /* its end closed, or a write to it failed */

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Empties the signalfd (SIGCHLD, SIGIO); the caller reaps when it may. */
static void drain_signals(void)
{
	struct signalfd_siginfo si;
	while (read(sfd, &si, sizeof si) == sizeof si)
		;
}

/* Sleeps until a signal comes (a step ended, the port's host side came or went) or `ms` pass. */
static void wait_signal(int ms)
{
	struct pollfd p = { .fd = sfd, .events = POLLIN };
	poll(&p, 1, ms);
	drain_signals();
}

/* Is the port's host side connected? */
static int host_connected(void)
{
	struct pollfd p = { .fd = in_fd, .events = POLLIN };
	return poll(&p, 1, 0) >= 0 && !(p.revents & POLLHUP);
}

/* The runner's end closed: is it gone for good? A port's host side may be back at once. */
static int runner_left(void)
{
	if (!on_port)
		return 1;
	for (int64_t end = now_ms() + RECONNECT_GRACE_MS; !host_connected();) {
		int64_t left = end - now_ms();
		if (left <= 0)
			return 1;
		wait_signal((int)left);
	}
	return 0;
}

/* A write to the port would block: waits until the host takes more, or has left (POLLHUP). */
static int wait_writable(void)
{
	struct pollfd p = { .fd = out_fd, .events = POLLOUT };
	while (poll(&p, 1, -1) < 0)
		if (errno != EINTR)
			return 0;
	if (p.revents & POLLHUP)
		return !runner_left();
	return (p.revents & POLLOUT) && !(p.revents & POLLERR);
}

static void write_all(const void *buf, size_t len)
{
	const char *p = buf;
	while (len && !runner_gone) {
		ssize_t n = write(out_fd, p, len);
		if (n > 0) {
			p += n;
			len -= (size_t)n;
		} else if (n < 0 && errno == EINTR) {
			continue;
		} else if (!(n < 0 && errno == EAGAIN && wait_writable())) {
			runner_gone = 1; /* the main loop ends the runner's steps */
		}
	}
}

static void put_u32(unsigned char *b, uint32_t v)
{
	b[0] = v & 0xff;
	b[1] = (v >> 8) & 0xff;
	b[2] = (v >> 16) & 0xff;
	b[3] = (v >> 24) & 0xff;
}

static uint32_t get_u32(const unsigned char *b)
{
	return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static void send_frame(char type, uint32_t id, const void *payload, uint32_t len)
{
	unsigned char h[9];
	h[0] = (unsigned char)type;
	put_u32(h + 1, id);
	put_u32(h + 5, len);
	write_all(h, sizeof h);
	if (len)
		write_all(payload, len);
}

static struct step *find(uint32_t id)
{
	for (int i = 0; i < MAX_STEPS; i++)
		if (steps[i].used && steps[i].id == id)
			return &steps[i];
	return NULL;
}

static void finish_if_done(struct step *s)
{
	if (!s->exited || s->out >= 0 || s->err >= 0)
		return;
	unsigned char code[4];
	put_u32(code, (uint32_t)s->status);
	send_frame('X', s->id, code, 4);
	s->used = 0;
}

static void fail_step(uint32_t id, const char *why)
{
	char msg[256];
	int n = snprintf(msg, sizeof msg, "step-agent: %s: %s\n", why, strerror(errno));
	unsigned char code[4];
	send_frame('E', id, msg, (uint32_t)n);
	put_u32(code, 127);
	send_frame('X', id, code, 4);
}

static void start_step(uint32_t id, char *payload, uint32_t len)
{
	char *argv[64];
	int argc = 0;
	for (uint32_t off = 0; off < len && argc < 63;) {
		argv[argc++] = payload + off;
		off += (uint32_t)strnlen(payload + off, len - off) + 1;
	}
	argv[argc] = NULL;
	struct step *s = NULL;
	for (int i = 0; i < MAX_STEPS && !s; i++)
		if (!steps[i].used)
			s = &steps[i];
	errno = EBUSY;
	if (!argc || !s || find(id))
		return fail_step(id, "cannot start the step");
	int out[2], err[2];
	if (pipe2(out, O_CLOEXEC) < 0)
		return fail_step(id, "pipe");
	if (pipe2(err, O_CLOEXEC) < 0) {
		close(out[0]);
		close(out[1]);
		return fail_step(id, "pipe");
	}
	pid_t pid = fork();
	if (pid == 0) {
		setsid();
		sigprocmask(SIG_UNBLOCK, &blocked, NULL);
		signal(SIGPIPE, SIG_DFL);
		int null = open("/dev/null", O_RDONLY);
		dup2(null, STDIN_FILENO);
		dup2(out[1], STDOUT_FILENO);
		dup2(err[1], STDERR_FILENO);
		/* Only 0, 1 and 2 reach the step, whatever the agent inherited: a lab checks which fds are open. */
		if (close_range(3, ~0U, 0) < 0)
			for (int fd = 3; fd < 1024; fd++)
				close(fd);
		if (static_bash && strcmp(argv[0], "bash") == 0)
			execv(static_bash, argv);
		execvp(argv[0], argv);
		dprintf(STDERR_FILENO, "step-agent: cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(out[1]);
	close(err[1]);
	if (pid < 0) {
		close(out[0]);
		close(err[0]);
		return fail_step(id, "fork");
	}
	*s = (struct step){ .used = 1, .id = id, .pid = pid, .out = out[0], .err = err[0] };
}

static void kill_step(struct step *s)
{
	if (!s->term_at) {
		kill(-s->pid, SIGTERM);
		s->term_at = now_ms();
	}
}

/* The runner is gone (or another came): kill every step's group, forget the steps. */
static void end_steps(void)
{
	for (int i = 0; i < MAX_STEPS; i++) {
		struct step *s = &steps[i];
		if (!s->used)
			continue;
		kill(-s->pid, SIGKILL);
		if (s->out >= 0)
			close(s->out);
		if (s->err >= 0)
			close(s->err);
		s->used = 0; /* reap() collects the process */
	}
}

/* Advances kills: KILL after the grace time, then gives up on pipes that
 * something outside the group still holds open. */
static void tick(void)
{
	int64_t t = now_ms();
	for (int i = 0; i < MAX_STEPS; i++) {
		struct step *s = &steps[i];
		if (!s->used || !s->term_at)
			continue;
		if (!s->killed && t - s->term_at >= KILL_GRACE_MS) {
			kill(-s->pid, SIGKILL);
			s->killed = 1;
		}
		if (s->exited && t - s->term_at >= ABANDON_MS) {
			if (s->out >= 0)
				close(s->out), s->out = -1;
			if (s->err >= 0)
				close(s->err), s->err = -1;
			finish_if_done(s);
		}
	}
}

static void reap(void)
{
	int status;
	pid_t pid;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		for (int i = 0; i < MAX_STEPS; i++) {
			struct step *s = &steps[i];
			if (s->used && s->pid == pid) {
				s->exited = 1;
				s->status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
				finish_if_done(s);
			}
		}
	}
}

/* A new runner says hello with a nonce: it gets the nonce back, the version and the kernel's release. */
static void answer_hello(const char *nonce, uint32_t len)
{
	char reply[MAX_NONCE + 16 + sizeof(((struct utsname *)0)->release)];
	struct utsname u;
	if (uname(&u) != 0)
		strcpy(u.release, "unknown");
	if (len > MAX_NONCE)
		len = MAX_NONCE;
	memcpy(reply, nonce, len);
	int n = snprintf(reply + len, sizeof reply - len, " %s %s", AGENT_VERSION, u.release);
	send_frame('H', 0, reply, len + (uint32_t)n);
}

/* Input from the runner, parsed as frames arrive. */
static unsigned char *inbuf;
static size_t inlen, incap;

static void handle_input(void)
{
	size_t used = 0;
	while (inlen - used >= 9) {
		unsigned char *h = inbuf + used;
		uint32_t id = get_u32(h + 1), len = get_u32(h + 5);
		if (len > MAX_PAYLOAD) {
			fprintf(stderr, "step-agent: frame of %u bytes is too big\n", len);
			end_steps();
			exit(2);
		}
		if (inlen - used < 9 + (size_t)len)
			break;
		char *payload = (char *)h + 9;
		if (h[0] == 'R') {
			if (len)
				payload[len - 1] = 0; /* the runner ends argv with NUL; make sure */
			start_step(id, payload, len);
		} else if (h[0] == 'K') {
			struct step *s = find(id);
			if (s)
				kill_step(s);
		} else if (h[0] == 'H') {
			/* Whatever still runs belongs to a runner that left unseen. */
			end_steps();
			answer_hello(payload, len);
		} else if (h[0] == 'Q') {
			end_steps();
		}
		used += 9 + len;
	}
	memmove(inbuf, inbuf + used, inlen - used);
	inlen -= used;
}

/* Reads what the runner sent; returns 0 once it is gone (end of stream, or the port's host side left). */
static int read_input(void)
{
	static const size_t chunk = 65536;
	if (incap - inlen < chunk) {
		incap = incap ? incap * 2 : chunk * 2;
		inbuf = realloc(inbuf, incap);
		if (!inbuf) {
			end_steps();
			exit(1);
		}
	}
	ssize_t r = read(in_fd, inbuf + inlen, incap - inlen);
	if (r < 0 && (errno == EINTR || errno == EAGAIN))
		return 1;
	if (r == 0)
		return !runner_left();
	if (r < 0)
		return 0;
	inlen += (size_t)r;
	handle_input();
	return 1;
}

/* Serves one runner: its steps, until it goes. Whatever it left running is still running. */
static void serve_runner(void)
{
	static char buf[65536];
	while (!runner_gone) {
		reap(); /* also what ended while a write or a reconnect was waited for */
		if (runner_gone)
			break;
		struct pollfd fds[2 + 2 * MAX_STEPS];
		struct { struct step *s; char kind; } who[2 + 2 * MAX_STEPS];
		int n = 0, pending_kill = 0;
		fds[n] = (struct pollfd){ .fd = in_fd, .events = POLLIN };
		who[n++].s = NULL;
		fds[n] = (struct pollfd){ .fd = sfd, .events = POLLIN };
		who[n++].s = NULL;
		for (int i = 0; i < MAX_STEPS; i++) {
			struct step *s = &steps[i];
			if (!s->used)
				continue;
			pending_kill |= s->term_at != 0;
			if (s->out >= 0) {
				fds[n] = (struct pollfd){ .fd = s->out, .events = POLLIN };
				who[n].s = s;
				who[n++].kind = 'O';
			}
			if (s->err >= 0) {
				fds[n] = (struct pollfd){ .fd = s->err, .events = POLLIN };
				who[n].s = s;
				who[n++].kind = 'E';
			}
		}
		if (poll(fds, (nfds_t)n, pending_kill ? 50 : -1) < 0) {
			if (errno == EINTR)
				continue;
			perror("step-agent: poll");
			end_steps();
			exit(1);
		}
		// Steps' output first: the input handled below may end steps and start
		// others in their slots, with the same fd numbers.
		for (int i = 2; i < n && !runner_gone; i++) {
			if (!fds[i].revents)
				continue;
			struct step *s = who[i].s;
			int *fd = who[i].kind == 'O' ? &s->out : &s->err;
			if (!s->used || *fd != fds[i].fd)
				continue;
			ssize_t r = read(*fd, buf, sizeof buf);
			if (r > 0) {
				send_frame(who[i].kind, s->id, buf, (uint32_t)r);
			} else if (r == 0 || errno != EINTR) {
				close(*fd);
				*fd = -1;
				finish_if_done(s);
			}
		}
		if (fds[1].revents)
			drain_signals(); /* the loop reaps next */
		if (fds[0].revents && !runner_gone && !read_input())
			runner_gone = 1;
		tick();
	}
}

/* --serve with a unix socket for PORT: each connection is one runner (a test's stand-in for a port). */
static int connect_runner(const char *path)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
	for (;;) {
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return -1;
		if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0)
			return fd;
		close(fd);
		wait_signal(50);
		reap();
	}
}

/* Waits until the port's host side is connected (QEMU has a client on its socket). */
static void wait_for_host(void)
{
	while (!host_connected()) {
		wait_signal(1000); /* SIGIO says when; the timeout is a fallback */
		reap();
	}
}

static int serve(const char *path, int restarted)
{
	struct stat st;
	int is_socket = stat(path, &st) == 0 && S_ISSOCK(st.st_mode);
	int port = -1;
	if (!is_socket) {
		port = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
		if (port < 0) {
			fprintf(stderr, "step-agent: cannot open %s: %s\n", path, strerror(errno));
			return 1;
		}
		// SIGIO when the host side comes or goes (or data arrives): no busy wait.
		fcntl(port, F_SETOWN, getpid());
		fcntl(port, F_SETFL, O_NONBLOCK | O_ASYNC);
		in_fd = out_fd = port;
		on_port = 1;
	}
	fprintf(stderr, "step-agent: serving %s\n", path);
	// The agent before this one died (stage2.sh starts another): a runner it was
	// serving still holds the port and would wait for its steps for ever. Tell it.
	// Only while a host is there: a port written to with none connected is
	// throttled until the next one disconnects.
	if (restarted && on_port && host_connected())
		send_frame('B', 0, NULL, 0);
	for (;;) {
		if (is_socket) {
			port = connect_runner(path);
			if (port < 0) {
				perror("step-agent: socket");
				return 1;
			}
			in_fd = out_fd = port;
		} else {
			wait_for_host();
		}
		serve_runner();
		end_steps(); /* nothing a runner started outlives it */
		inlen = 0;
		runner_gone = 0;
		if (is_socket)
			close(port);
	}
}

int main(int argc, char **argv)
{
	sigemptyset(&blocked);
	sigaddset(&blocked, SIGCHLD);
	sigaddset(&blocked, SIGIO);
	sigprocmask(SIG_BLOCK, &blocked, NULL);
	signal(SIGPIPE, SIG_IGN);
	sfd = signalfd(-1, &blocked, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sfd < 0) {
		perror("step-agent: signalfd");
		return 1;
	}
	if (access("/bin/bash-static", X_OK) == 0)
		static_bash = "/bin/bash-static";
	if ((argc == 3 || (argc == 4 && strcmp(argv[3], "--restarted") == 0)) && strcmp(argv[1], "--serve") == 0)
		return serve(argv[2], argc == 4);
	if (argc != 1) {
		fprintf(stderr, "usage: step-agent            (frames on stdin/stdout)\n"
				"       step-agent --serve PORT [--restarted]  (a virtio-serial port, for ever;\n"
				"                                 --restarted: tell a runner still there that the last agent died)\n");
		return 2;
	}
	send_frame('H', 0, AGENT_VERSION, (uint32_t)strlen(AGENT_VERSION));
	serve_runner();
	end_steps(); /* the runner went away: nothing it started may outlive it */
	return 0;
}
