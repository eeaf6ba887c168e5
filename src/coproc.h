/* coproc.h: co-processes (-- COMMAND): one, or one per conversation (--per); started, fed, restarted, closed. */
#ifndef MC_COPROC_H
#define MC_COPROC_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <jv.h>

#include "conversation.h"

struct bridge;
struct message;
struct pollset;

/* The co-processes: without --per exactly one, with --per one per
 * conversation that has work (started on its first message). */
struct coprocs {
	struct coproc *list;     /* most recently used first */
	int alive;               /* started and not reaped yet: what --max-procs bounds */
	int tracked;             /* conversations known: alive ones, and ones waiting for a restart */
	struct coproc *feeding;  /* whose reply lines are being read: a reply without an id is its */
	int restarts_waiting;    /* --per: restarts due that wait for a slot */
	bool timing_out;         /* the reply being made is --reply-timeout's, not the handler's */
};

/* Without --per: starts the co-process. false: it cannot be started (reported,
 * the bridge stopped). */
bool coproc_setup(struct bridge *b);

/* Without --per: the co-process can take a message now. */
bool coproc_ready(const struct bridge *b);
/* The co-process of conversation c, or NULL. */
struct coproc *coproc_find(struct bridge *b, const struct conv_id *c);
/* co can take a message now: alive, its input open, not being closed. */
bool coproc_takes(const struct coproc *co);
/* --per: a new conversation's co-process may start now (--max-procs). */
bool coproc_slot_free(const struct bridge *b);
/* --per: starts the co-process of m's conversation c. NULL when it could not
 * be started (reported; tried again later, or the bridge stopped). */
struct coproc *coproc_open(struct bridge *b, const struct conv_id *c, const struct message *m);
/* --per: n new conversations wait for a slot: close the least recently used
 * idle co-processes until n are being closed. */
void coproc_want_slots(struct bridge *b, int n);
/* Writes m's lines (outs, consumed: what --filter made of it) to co; m is open. */
void coproc_give(struct bridge *b, struct coproc *co, struct message *m, jv outs);

/* A co-process is alive (not reaped yet). */
bool coproc_running(const struct bridge *b);
/* The oldest message handed out and not answered: of the co-process whose
 * lines are being read (under --per), else of all. For a reply without an id. */
struct message *coproc_oldest_open(struct bridge *b);
/* m, open, is being answered: its co-process works. */
void coproc_answered(struct bridge *b, const struct message *m);
/* SIGCHLD's pid: true when it was a co-process (its messages go to the next one). */
bool coproc_reaped(struct bridge *b, pid_t pid, int status);

/* Restarts what is due, times out held messages, closes idle co-processes,
 * ends input while draining, runs stop sequences. */
void coproc_tick(struct bridge *b, int64_t now);
/* Milliseconds until coproc_tick has something to do, or -1. */
int64_t coproc_next_wakeup(const struct bridge *b, int64_t now);
/* Their pipes to wait on, and reading and writing them when ready. */
void coproc_watch(struct bridge *b, struct pollset *ps);
void coproc_service(struct bridge *b, const struct pollset *ps);

/* The bridge stops: every co-process gets end of input and wait_ms to exit,
 * then SIGTERM, then SIGKILL (child_stop). A later call can only hurry it. */
void coproc_stop(struct bridge *b, int64_t now, int64_t wait_ms);
/* At exit: what still runs is killed, and everything freed. */
void coproc_free(struct bridge *b);

#endif
