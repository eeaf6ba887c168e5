/* coproc.h: the co-process (-- COMMAND): started, restarted when it dies, told to finish, stopped. */
#ifndef MC_COPROC_H
#define MC_COPROC_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "child.h"

struct bridge;

struct coproc {
	struct child p;
	int64_t restart_at;      /* 0: no restart pending */
	int failures;            /* quick deaths in a row */
};

/* Starts it and makes its pipes the dispatch channels. false: reported. */
bool coproc_start(struct bridge *b);
/* Alive with its stdin open: it can take a message. */
bool coproc_ready(const struct bridge *b);
/* Alive (its exit has not been reaped yet). */
bool coproc_running(const struct bridge *b);
/* It answered: it works, however often it was restarted. */
void coproc_answered(struct bridge *b);
/* It closed its output: it cannot answer any more; its exit hands its messages on. */
void coproc_output_closed(struct bridge *b);
/* SIGCHLD's pid: true when it was the co-process (its messages go to the next one). */
bool coproc_reaped(struct bridge *b, pid_t pid, int status);
/* Restarts it when due; while draining, ends its input once its last message is written. */
void coproc_tick(struct bridge *b, int64_t now);
/* Milliseconds until a restart is due, or -1. */
int64_t coproc_next_wakeup(const struct bridge *b, int64_t now);
/* At exit: end of input, SIGTERM, SIGKILL after the grace period. */
void coproc_stop(struct bridge *b);

#endif
