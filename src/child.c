/* child.c: handler processes: spawn with pipes and a clean environment, signal, reap, stop. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "child.h"
#include "util.h"

extern char **environ;

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

int child_start(struct child *p, char *const argv[], char *const extra_env[], bool own_group, char **err)
{
	int in[2] = { -1, -1 }, out[2] = { -1, -1 };
	memset(p, 0, sizeof *p);
	p->to_fd = p->from_fd = -1;
	if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0) {
		*err = xasprintf("cannot create pipes: %s", strerror(errno));
		goto fail;
	}
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	posix_spawn_file_actions_init(&fa);
	posix_spawnattr_init(&at);
	posix_spawn_file_actions_adddup2(&fa, in[0], STDIN_FILENO);
	posix_spawn_file_actions_adddup2(&fa, out[1], STDOUT_FILENO);
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
		*err = xasprintf("cannot start %s: %s", argv[0], strerror(rc));
		goto fail;
	}
	close(in[0]);
	close(out[1]);
	fcntl(in[1], F_SETFL, fcntl(in[1], F_GETFL) | O_NONBLOCK);
	fcntl(out[0], F_SETFL, fcntl(out[0], F_GETFL) | O_NONBLOCK);
	p->pid = pid;
	p->to_fd = in[1];
	p->from_fd = out[0];
	p->own_group = own_group;
	p->started_at = now_ms();
	return 0;
fail:
	for (int i = 0; i < 2; i++) {
		if (in[i] >= 0)
			close(in[i]);
		if (out[i] >= 0)
			close(out[i]);
	}
	return -1;
}

void child_signal(struct child *p, int sig)
{
	if (p->pid <= 0 || p->exited)
		return;
	if (p->own_group)
		kill(-p->pid, sig);
	else
		kill(p->pid, sig);
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

void child_stop_all(struct child *const *children, size_t n)
{
	for (size_t i = 0; i < n; i++)
		child_signal(children[i], SIGTERM);
	int64_t until = now_ms() + CHILD_KILL_GRACE_MS;
	for (;;) {
		int status;
		pid_t pid;
		while ((pid = child_reap(&status)) > 0)
			for (size_t i = 0; i < n; i++)
				if (children[i]->pid == pid) {
					children[i]->exited = true;
					children[i]->status = status;
				}
		bool alive = false;
		for (size_t i = 0; i < n; i++)
			alive |= children[i]->pid > 0 && !children[i]->exited;
		if (!alive)
			return;
		if (now_ms() >= until) {
			for (size_t i = 0; i < n; i++)
				child_signal(children[i], SIGKILL);
			until = now_ms() + CHILD_KILL_GRACE_MS;
		}
		struct timespec ts = { 0, 20 * 1000000L };
		nanosleep(&ts, NULL);
	}
}

char *child_describe(int status)
{
	if (WIFEXITED(status))
		return xasprintf("exit status %d", WEXITSTATUS(status));
	if (WIFSIGNALED(status))
		return xasprintf("killed by signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
	return xstrdup("stopped");
}
