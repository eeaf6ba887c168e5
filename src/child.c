/* child.c: handler processes: spawn with pipes and a clean environment, stop in steps, reap, read their stderr. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "child.h"
#include "exitcode.h"
#include "log.h"

extern char **environ;

void child_setup(void)
{
	/* Processes a handler leaves behind become ours when it exits: their
	 * end is then reported by SIGCHLD, so stopping a group needs no polling. */
	prctl(PR_SET_CHILD_SUBREAPER, 1);
#ifdef CLOSE_RANGE_CLOEXEC
	/* libcurl's own socket pair and whatever we inherited: no handler may
	 * hold them. (Children get only 0-2 anyway; this covers every exec.) */
	close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
#endif
}

static char **child_environ(char *const extra[])
{
	size_t n = 0, k = 0;
	for (char **e = environ; *e; e++)
		n++;
	for (char *const *e = extra; e && *e; e++)
		n++;
	char **env = xcalloc(n + 1, sizeof *env);
	for (char **e = environ; *e; e++) {
		/* The token stays with the bridge: a handler never needs it. */
		if (strncmp(*e, "MOLECULE_WORKSPACE_TOKEN=", 25) == 0)
			continue;
		/* Extra variables replace inherited ones of the same name. */
		bool replaced = false;
		for (char *const *x = extra; x && *x && !replaced; x++) {
			const char *eq = strchr(*x, '=');
			size_t len = eq ? (size_t)(eq - *x) + 1 : strlen(*x);
			replaced = strncmp(*e, *x, len) == 0;
		}
		if (!replaced)
			env[k++] = *e;
	}
	for (char *const *x = extra; x && *x; x++)
		env[k++] = *x;
	env[k] = NULL;
	return env;
}

/* The file posix_spawnp would run for name, or NULL (caller frees). */
static char *find_program(const char *name)
{
	if (strchr(name, '/'))
		return access(name, F_OK) == 0 ? xstrdup(name) : NULL;
	const char *p = getenv("PATH");
	for (p = p ? p : "/bin:/usr/bin";; p++) {
		/* An empty entry is the current directory. */
		size_t len = strcspn(p, ":");
		char *file = xasprintf("%.*s%s%s", (int)len, p, len ? "/" : "", name);
		struct stat st;
		if (stat(file, &st) == 0 && S_ISREG(st.st_mode))
			return file;
		free(file);
		p += len;
		if (!*p)
			return NULL;
	}
}

/* Why spawning argv[0] failed with errno rc, in words. */
static char *spawn_error(const char *name, int rc)
{
	char *file = rc == ENOENT ? find_program(name) : NULL;
	char *err;
	if (file) {
		/* The file is there: what is missing is the interpreter on its #! line. */
		err = xasprintf("cannot start %s: the interpreter named on its first line (#!) is missing", file);
		free(file);
		return err;
	}
	return xasprintf("cannot start %s: %s", name, strerror(rc));
}

int child_cannot_run(int spawn_errno)
{
	switch (spawn_errno) {
	case ENOENT:
	case ENOTDIR:
	case ELOOP:
	case ENAMETOOLONG:
		return MC_EXIT_NOT_FOUND;
	case EACCES:
	case EPERM:
	case ENOEXEC:
	case EISDIR:
	case ELIBBAD:
	case ETXTBSY:
	case E2BIG:
		return MC_EXIT_CANNOT_RUN;
	default:
		return 0;
	}
}

int child_status_cannot_run(int wait_status)
{
	if (WIFEXITED(wait_status) && (WEXITSTATUS(wait_status) == MC_EXIT_CANNOT_RUN ||
				       WEXITSTATUS(wait_status) == MC_EXIT_NOT_FOUND))
		return WEXITSTATUS(wait_status);
	return 0;
}

static void close_pair(int fds[2])
{
	for (int i = 0; i < 2; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

int child_start(struct child *p, char *const argv[], char *const extra_env[], bool own_group, bool pipe_stderr,
		char **err)
{
	int in[2] = { -1, -1 }, out[2] = { -1, -1 }, errp[2] = { -1, -1 };
	memset(p, 0, sizeof *p);
	p->to_fd = p->from_fd = p->err_fd = -1;
	if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0 || (pipe_stderr && pipe2(errp, O_CLOEXEC) < 0)) {
		int e = errno;
		*err = xasprintf("cannot create pipes: %s", strerror(e));
		close_pair(in);
		close_pair(out);
		close_pair(errp);
		return e;
	}
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	posix_spawn_file_actions_init(&fa);
	posix_spawnattr_init(&at);
	posix_spawn_file_actions_adddup2(&fa, in[0], STDIN_FILENO);
	posix_spawn_file_actions_adddup2(&fa, out[1], STDOUT_FILENO);
	if (pipe_stderr)
		posix_spawn_file_actions_adddup2(&fa, errp[1], STDERR_FILENO);
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
	/* Only 0, 1 and 2: nothing of ours or of our parent's leaks in. */
	posix_spawn_file_actions_addclosefrom_np(&fa, 3);
#endif
	/* The bridge blocks the signals it reads through signalfd and ignores
	 * SIGPIPE: a handler starts with neither. */
	sigset_t none, defaults;
	sigemptyset(&none);
	sigemptyset(&defaults);
	sigaddset(&defaults, SIGPIPE);
	sigaddset(&defaults, SIGINT);
	sigaddset(&defaults, SIGTERM);
	sigaddset(&defaults, SIGHUP);
	sigaddset(&defaults, SIGCHLD);
	short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
	posix_spawnattr_setsigmask(&at, &none);
	posix_spawnattr_setsigdefault(&at, &defaults);
	if (own_group) {
		flags |= POSIX_SPAWN_SETPGROUP;
		posix_spawnattr_setpgroup(&at, 0);
	}
	posix_spawnattr_setflags(&at, flags);
	char **env = child_environ(extra_env);
	pid_t pid;
	int rc = posix_spawnp(&pid, argv[0], &fa, &at, argv, env);
	free(env);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	if (rc != 0) {
		*err = spawn_error(argv[0], rc);
		close_pair(in);
		close_pair(out);
		close_pair(errp);
		return rc;
	}
	close(in[0]);
	close(out[1]);
	fcntl(in[1], F_SETFL, fcntl(in[1], F_GETFL) | O_NONBLOCK);
	fcntl(out[0], F_SETFL, fcntl(out[0], F_GETFL) | O_NONBLOCK);
	if (pipe_stderr) {
		close(errp[1]);
		fcntl(errp[0], F_SETFL, fcntl(errp[0], F_GETFL) | O_NONBLOCK);
		p->err_fd = errp[0];
	}
	p->pid = pid;
	p->to_fd = in[1];
	p->from_fd = out[0];
	p->own_group = own_group;
	p->started_at = now_ms();
	return 0;
}

/* Members of group pgid are left (our zombies among them are reaped first). */
static bool group_alive(pid_t pgid)
{
	int status;
	while (waitpid(-pgid, &status, WNOHANG) > 0)
		;
	return kill(-pgid, 0) == 0 || errno == EPERM;
}

bool child_group_alive(const struct child *p)
{
	if (p->pid <= 0)
		return false;
	if (!p->exited)
		return true;
	return p->own_group && group_alive(p->pid);
}

void child_signal(struct child *p, int sig)
{
	if (p->pid <= 0)
		return;
	if (p->own_group) {
		/* After the leader's exit its group lives on while any member
		 * does, and its id cannot be reused until then. */
		if (!p->exited || group_alive(p->pid))
			kill(-p->pid, sig);
	} else if (!p->exited) {
		kill(p->pid, sig);
	}
}

void child_close_stdin(struct child *p)
{
	if (p->to_fd >= 0)
		close(p->to_fd);
	p->to_fd = -1;
}

void child_close_stdout(struct child *p)
{
	if (p->from_fd >= 0)
		close(p->from_fd);
	p->from_fd = -1;
}

pid_t child_reap(int *status)
{
	pid_t pid;
	do
		pid = waitpid(-1, status, WNOHANG);
	while (pid < 0 && errno == EINTR);
	return pid > 0 ? pid : 0;
}

/* ---- stopping in steps ------------------------------------------------- */

void child_stop(struct child *p, int64_t now, int64_t wait_ms)
{
	child_close_stdin(p);
	if (wait_ms < 0)
		wait_ms = 0;
	if (!p->kill_at && (!p->term_at || now + wait_ms < p->term_at))
		p->term_at = now + wait_ms;
}

void child_stop_tick(struct child *p, int64_t now)
{
	if (p->pid <= 0 || !child_group_alive(p))
		return;
	if (p->term_at && !p->kill_at && now >= p->term_at) {
		child_signal(p, SIGTERM);
		p->kill_at = now + CHILD_KILL_GRACE_MS;
	} else if (p->kill_at && now >= p->kill_at) {
		child_signal(p, SIGKILL);
		p->kill_at = INT64_MAX; /* once: SIGKILL cannot be refused */
	}
}

int64_t child_stop_next(const struct child *p, int64_t now)
{
	if (p->pid <= 0)
		return -1;
	if (p->term_at && !p->kill_at)
		return p->term_at > now ? p->term_at - now : 0;
	if (p->kill_at && p->kill_at != INT64_MAX)
		return p->kill_at > now ? p->kill_at - now : 0;
	return -1;
}

/* ---- groups left behind ------------------------------------------------- */

/* A process group whose leader was reaped: the stop sequence goes on for what
 * is left in it. */
struct lingering {
	pid_t pgid;
	int64_t term_at, kill_at, give_up_at; /* 0: not yet */
};
static struct lingering *lingering;
static size_t n_lingering, cap_lingering;

void child_linger(const struct child *p, int64_t now, int64_t wait_ms)
{
	if (p->pid <= 0 || !p->own_group || !group_alive(p->pid))
		return;
	if (n_lingering == cap_lingering) {
		cap_lingering = cap_lingering ? 2 * cap_lingering : 8;
		lingering = xrealloc(lingering, cap_lingering * sizeof *lingering);
	}
	/* A stop already under way goes on where it was. */
	int64_t term_at = now + (wait_ms > 0 ? wait_ms : 0);
	if (p->term_at && p->term_at < term_at)
		term_at = p->term_at;
	lingering[n_lingering++] = (struct lingering){ p->pid, term_at, p->kill_at, 0 };
}

void child_linger_hurry(int64_t now, int64_t wait_ms)
{
	for (size_t i = 0; i < n_lingering; i++)
		if (!lingering[i].kill_at && lingering[i].term_at > now + wait_ms)
			lingering[i].term_at = now + (wait_ms > 0 ? wait_ms : 0);
}

void child_linger_tick(int64_t now)
{
	for (size_t i = 0; i < n_lingering;) {
		struct lingering *l = &lingering[i];
		bool drop = !group_alive(l->pgid);
		if (!drop && !l->kill_at && now >= l->term_at) {
			kill(-l->pgid, SIGTERM);
			l->kill_at = now + CHILD_KILL_GRACE_MS;
		} else if (!drop && l->kill_at && !l->give_up_at && now >= l->kill_at) {
			kill(-l->pgid, SIGKILL);
			l->give_up_at = now + CHILD_KILL_GRACE_MS;
		} else if (!drop && l->give_up_at && now >= l->give_up_at) {
			log_warn("process group %d did not end after SIGKILL: no longer waiting for it", (int)l->pgid);
			drop = true;
		}
		if (drop)
			*l = lingering[--n_lingering];
		else
			i++;
	}
}

int64_t child_linger_next(int64_t now)
{
	int64_t wait = -1;
	for (size_t i = 0; i < n_lingering; i++) {
		const struct lingering *l = &lingering[i];
		int64_t at = l->give_up_at ? l->give_up_at : l->kill_at ? l->kill_at : l->term_at;
		wait = wait_min(wait, at > now ? at - now : 0);
	}
	return wait;
}

bool child_lingering(void)
{
	return n_lingering > 0;
}

void child_linger_end(void)
{
	for (size_t i = 0; i < n_lingering; i++)
		if (group_alive(lingering[i].pgid))
			kill(-lingering[i].pgid, SIGKILL);
	free(lingering);
	lingering = NULL;
	n_lingering = cap_lingering = 0;
}

/* ---- stderr ------------------------------------------------------------- */

static void err_line_done(struct child *p, const char *handler, const char *conversation)
{
	log_handler(handler, (long)p->pid, conversation, p->err_line.p ? p->err_line.p : "", p->err_line.len);
	p->err_line.len = 0;
	if (p->err_line.p)
		p->err_line.p[0] = '\0';
}

/* Adds data[0..n) (no newline in it) to the line being read, up to the cap. */
static void err_line_add(struct child *p, const char *data, size_t n, const char *handler, const char *conversation)
{
	if (p->err_cutting)
		return;
	size_t room = CHILD_ERR_LINE_MAX - p->err_line.len;
	if (n <= room) {
		buf_append(&p->err_line, data, n);
		return;
	}
	buf_append(&p->err_line, data, room);
	buf_append(&p->err_line, "...", 3);
	err_line_done(p, handler, conversation);
	p->err_cutting = true;
}

void child_read_stderr(struct child *p, const char *handler, const char *conversation)
{
	char chunk[16384];
	/* A handler that never stops writing does not keep the loop here. */
	for (int rounds = 0; p->err_fd >= 0 && rounds < 64; rounds++) {
		ssize_t n = read(p->err_fd, chunk, sizeof chunk);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			if (p->err_line.len > 0)
				err_line_done(p, handler, conversation);
			close(p->err_fd);
			p->err_fd = -1;
			buf_free(&p->err_line);
			return;
		}
		const char *s = chunk;
		size_t left = (size_t)n;
		while (left > 0) {
			const char *nl = memchr(s, '\n', left);
			size_t seg = nl ? (size_t)(nl - s) : left;
			err_line_add(p, s, seg, handler, conversation);
			if (nl) {
				if (!p->err_cutting)
					err_line_done(p, handler, conversation);
				p->err_cutting = false;
				seg++;
			}
			s += seg;
			left -= seg;
		}
	}
}

void child_release(struct child *p)
{
	child_close_stdin(p);
	child_close_stdout(p);
	if (p->err_fd >= 0)
		close(p->err_fd);
	p->err_fd = -1;
	buf_free(&p->err_line);
}

char *child_describe(int status)
{
	if (WIFEXITED(status))
		return xasprintf("exit status %d", WEXITSTATUS(status));
	if (WIFSIGNALED(status))
		return xasprintf("killed by signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
	return xstrdup("stopped");
}
