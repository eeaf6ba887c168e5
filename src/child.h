/* child.h: handler processes: spawned with pipes in their own group, signalled, reaped, stopped. */
#ifndef MC_CHILD_H
#define MC_CHILD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct child {
	pid_t pid;          /* 0: not running */
	int to_fd;          /* its stdin, ours to write (non-blocking); -1 once closed */
	int from_fd;        /* its stdout, ours to read (non-blocking); -1 once at EOF */
	bool own_group;     /* leads its own process group: signals go to the group */
	bool exited;
	int status;         /* wait status once exited */
	int64_t started_at; /* monotonic ms */
};

/* Starts argv (argv[0] searched in PATH) with pipes on stdin and stdout; stderr is
 * shared with ours. The environment is ours without MOLECULE_WORKSPACE_TOKEN, plus
 * extra_env ("NAME=value", NULL-terminated, may be NULL). Signal mask and
 * dispositions are reset to defaults. 0, or -1 with *err set. */
int child_start(struct child *p, char *const argv[], char *const extra_env[], bool own_group, char **err);
/* Sends sig to the process, or its whole group when it leads one. */
void child_signal(struct child *p, int sig);
void child_close_stdin(struct child *p);
void child_close_stdout(struct child *p);
/* Reaps any exited child without waiting: returns its pid and status, or 0.
 * The loop hands each pid to the module that owns the child. */
pid_t child_reap(int *status);
/* At shutdown: SIGTERM to each of the n children that still runs, SIGKILL to what is
 * left after CHILD_KILL_GRACE_MS (again every grace period), until all of them
 * are reaped (exited and status set). Other children reaped meanwhile are
 * ignored: at shutdown nothing waits for them. */
#define CHILD_KILL_GRACE_MS 2000
void child_stop_all(struct child *const *children, size_t n);
/* "exit status 3", "killed by signal 9 (Killed)": caller frees. */
char *child_describe(int status);

#endif
