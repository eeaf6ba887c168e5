/* child.h: handler processes: spawned with pipes in their own group, stopped in steps, reaped, their stderr read. */
#ifndef MC_CHILD_H
#define MC_CHILD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "util.h"

/* Between SIGTERM and SIGKILL, and after SIGKILL before a child is given up on. */
#define CHILD_KILL_GRACE_MS 2000
/* A line a handler writes on stderr, in a JSON log line: longer ones are cut. */
#define CHILD_ERR_LINE_MAX 8192

struct child {
	pid_t pid;          /* 0: not started */
	int to_fd;          /* its stdin, ours to write (non-blocking); -1 once closed */
	int from_fd;        /* its stdout, ours to read (non-blocking); -1 once at EOF */
	int err_fd;         /* its stderr, ours to read (non-blocking); -1: it shares ours */
	bool own_group;     /* leads its own process group: signals go to the group */
	bool exited;        /* reaped */
	int status;         /* wait status once exited */
	int64_t started_at; /* monotonic ms */
	/* The stop sequence (child_stop_*): SIGTERM to the group at term_at, SIGKILL
	 * CHILD_KILL_GRACE_MS later; 0: not scheduled. */
	int64_t term_at, kill_at;
	struct buf err_line; /* a stderr line not finished yet */
	bool err_cutting;   /* the rest of an overlong stderr line is dropped */
};

/* Once at start-up: the bridge adopts what its handlers leave behind (so it
 * can wait for their process groups to end), and marks every descriptor it
 * holds close-on-exec, those libraries made and those it inherited too. */
void child_setup(void);

/* Starts argv (argv[0] searched in PATH) with pipes on stdin and stdout, and on
 * stderr when pipe_stderr (else stderr is shared with ours), and no other
 * descriptor. The environment is ours without MOLECULE_WORKSPACE_TOKEN, plus
 * extra_env ("NAME=value", NULL-terminated, may be NULL). Signal mask and
 * dispositions are reset to defaults. 0, or the spawn's errno with *err set. */
int child_start(struct child *p, char *const argv[], char *const extra_env[], bool own_group, bool pipe_stderr,
		char **err);
/* The exit status that says a spawn failure (child_start's errno) is for good:
 * 127 (not found, or its #! interpreter is missing), 126 (not executable), or 0
 * when trying again later may work (no memory, too many processes). */
int child_cannot_run(int spawn_errno);
/* An exit status a shell gives a command it cannot run (126, 127), or 0. */
int child_status_cannot_run(int wait_status);

/* Sends sig to the process, or to its whole group when it leads one; after its
 * exit, to what is left of the group. */
void child_signal(struct child *p, int sig);
void child_close_stdin(struct child *p);
void child_close_stdout(struct child *p);
/* Reaps any exited child without waiting: returns its pid and status, or 0.
 * The loop hands each pid to the module that owns the child. */
pid_t child_reap(int *status);

/* The stop sequence: end of input now, SIGTERM to the group after wait_ms
 * (earlier if already scheduled), SIGKILL CHILD_KILL_GRACE_MS after that. */
void child_stop(struct child *p, int64_t now, int64_t wait_ms);
/* Runs the sequence: signals what is due. */
void child_stop_tick(struct child *p, int64_t now);
/* Milliseconds until its next step, or -1. */
int64_t child_stop_next(const struct child *p, int64_t now);
/* Its process group still has members (the leader not reaped, or processes
 * it left behind). */
bool child_group_alive(const struct child *p);

/* A child reaped while processes of its group live on (a background job, a
 * process substitution): the stop sequence goes on for them, SIGTERM after
 * wait_ms (or when the child's own sequence had it due), SIGKILL after the
 * grace period, tracked here until the group is empty. */
void child_linger(const struct child *p, int64_t now, int64_t wait_ms);
/* The bridge stops: SIGTERM to those groups after wait_ms at the latest. */
void child_linger_hurry(int64_t now, int64_t wait_ms);
void child_linger_tick(int64_t now);
int64_t child_linger_next(int64_t now);
bool child_lingering(void);
/* At exit: SIGKILL to every group still tracked, then forgotten. */
void child_linger_end(void);

/* Reads what it wrote on stderr (err_fd) and logs each line as the handler's
 * (log_handler), at end of file the last one too; closes err_fd at its end. */
void child_read_stderr(struct child *p, const char *handler, const char *conversation);
/* Closes the pipes and frees what the child record holds. */
void child_release(struct child *p);

/* "exit status 3", "killed by signal 9 (Killed)": caller frees. */
char *child_describe(int status);

#endif
