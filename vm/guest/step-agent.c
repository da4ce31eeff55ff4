// step-agent: runs lab steps for the runner, many over one stream.
// The guest half of the runner's step transport (vm/step-agent.ts is the
// host half), kept beside the guest's init; bpf/Makefile builds it, with no
// libbpf, to build/bin/step-agent, which the guest runs.
//
// Starting a command over SSH costs a new channel, a session process in sshd
// and a login shell before the step's own bash even starts: about 0.3 s per
// step in an emulated guest. The runner instead starts this agent once per
// connection and sends it the steps; the agent forks each one straight into
// its own session (so its whole process group can be killed) and streams its
// output back. A step costs one fork and one exec.
//
// Frames in both directions: 1 byte type, 4 bytes id, 4 bytes payload length
// (little-endian), then the payload.
//   runner -> agent   'R' id argv     run argv (NUL-terminated strings) as step id
//                     'K' id          kill step id's process group (TERM, then KILL)
//   agent -> runner   'H' 0  version  the agent is ready
//                     'O' id bytes    the step wrote to stdout
//                     'E' id bytes    the step wrote to stderr
//                     'X' id int32    the step ended: exit code, or 128 + signal
// A step's argv[0] "bash" runs Debian's static build of the same bash when the
// guest has it (bash-static): no dynamic loading saves ~70 ms per step under TCG.
// A step has ended when its first process has exited and both of its output
// pipes are closed (as an SSH channel would close). When the runner goes away
// (stdin closes), every running step's group is killed and the agent exits.
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
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define AGENT_VERSION "1"
#define MAX_STEPS 64
#define MAX_PAYLOAD (4u << 20)
#define KILL_GRACE_MS 300  /* TERM, then KILL this much later */
#define ABANDON_MS 1500    /* after a kill, stop waiting for pipes held elsewhere */

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

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void write_all(const void *buf, size_t len)
{
	const char *p = buf;
	while (len) {
		ssize_t n = write(STDOUT_FILENO, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			_exit(3); /* the runner is gone; kill_all ran or the group dies with sshd */
		p += n;
		len -= (size_t)n;
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

static void start_step(uint32_t id, char *payload, uint32_t len, const sigset_t *blocked)
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
		sigprocmask(SIG_UNBLOCK, blocked, NULL);
		signal(SIGPIPE, SIG_DFL);
		int null = open("/dev/null", O_RDONLY);
		dup2(null, STDIN_FILENO);
		dup2(out[1], STDOUT_FILENO);
		dup2(err[1], STDERR_FILENO);
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

static void kill_all(void)
{
	for (int i = 0; i < MAX_STEPS; i++)
		if (steps[i].used)
			kill(-steps[i].pid, SIGKILL);
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

/* Input from the runner, parsed as frames arrive. */
static unsigned char *inbuf;
static size_t inlen, incap;

static void handle_input(const sigset_t *blocked)
{
	size_t used = 0;
	while (inlen - used >= 9) {
		unsigned char *h = inbuf + used;
		uint32_t id = get_u32(h + 1), len = get_u32(h + 5);
		if (len > MAX_PAYLOAD) {
			fprintf(stderr, "step-agent: frame of %u bytes is too big\n", len);
			kill_all();
			exit(2);
		}
		if (inlen - used < 9 + (size_t)len)
			break;
		char *payload = (char *)h + 9;
		if (h[0] == 'R') {
			if (len)
				payload[len - 1] = 0; /* the runner ends argv with NUL; make sure */
			start_step(id, payload, len, blocked);
		} else if (h[0] == 'K') {
			struct step *s = find(id);
			if (s)
				kill_step(s);
		}
		used += 9 + len;
	}
	memmove(inbuf, inbuf + used, inlen - used);
	inlen -= used;
}

int main(void)
{
	sigset_t blocked;
	sigemptyset(&blocked);
	sigaddset(&blocked, SIGCHLD);
	sigprocmask(SIG_BLOCK, &blocked, NULL);
	signal(SIGPIPE, SIG_IGN);
	int sfd = signalfd(-1, &blocked, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sfd < 0) {
		perror("step-agent: signalfd");
		return 1;
	}
	if (access("/bin/bash-static", X_OK) == 0)
		static_bash = "/bin/bash-static";
	send_frame('H', 0, AGENT_VERSION, (uint32_t)strlen(AGENT_VERSION));

	static char buf[65536];
	for (;;) {
		struct pollfd fds[2 + 2 * MAX_STEPS];
		struct { struct step *s; char kind; } who[2 + 2 * MAX_STEPS];
		int n = 0, pending_kill = 0;
		fds[n] = (struct pollfd){ .fd = STDIN_FILENO, .events = POLLIN };
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
			kill_all();
			return 1;
		}
		if (fds[0].revents) {
			if (incap - inlen < sizeof buf) {
				incap = incap ? incap * 2 : sizeof buf * 2;
				inbuf = realloc(inbuf, incap);
				if (!inbuf) {
					kill_all();
					return 1;
				}
			}
			ssize_t r = read(STDIN_FILENO, inbuf + inlen, incap - inlen);
			if (r <= 0 && !(r < 0 && errno == EINTR)) {
				kill_all(); /* the runner went away: nothing it started may outlive it */
				return 0;
			}
			if (r > 0) {
				inlen += (size_t)r;
				handle_input(&blocked);
			}
		}
		for (int i = 2; i < n; i++) {
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
		if (fds[1].revents) {
			struct signalfd_siginfo si;
			while (read(sfd, &si, sizeof si) == sizeof si)
				;
			reap();
		}
		tick();
	}
}
