/* exec.h: --exec: one shell command per message, fed its input, timed, its output made the reply. */
#ifndef MC_EXEC_H
#define MC_EXEC_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <jv.h>

#include "conversation.h"

struct bridge;
struct message;
struct pollset;

#define EXEC_OUTPUT_MAX (1u << 20)       /* what one command may print */

struct exec_pool {
	struct exec_job *jobs;
	int njobs;
	bool succeeded;          /* a command exited 0: a later 126/127 is that message's */
};

/* Room for one more command (--concurrency). */
bool exec_ready(const struct bridge *b);
/* Under --per: a command of conversation c runs. */
bool exec_conv_busy(const struct bridge *b, const struct conv_id *c);
/* A command has not finished yet. */
bool exec_running(const struct bridge *b);
/* Runs the command for m; shown (consumed) is its line after --filter. A
 * command that cannot start leaves m queued, to be tried again later. */
void exec_start(struct bridge *b, struct message *m, jv shown);
/* Kills what ran out of time, and turns what finished into replies. */
void exec_tick(struct bridge *b, int64_t now);
/* Milliseconds until the next timeout, or -1. */
int64_t exec_next_wakeup(const struct bridge *b, int64_t now);
/* The commands' pipes to wait on, and their input and output when ready. */
void exec_watch(struct bridge *b, struct pollset *ps);
void exec_service(struct bridge *b);
/* SIGCHLD's pid: true when it was one of the commands. */
bool exec_reaped(struct bridge *b, pid_t pid, int status);
/* The bridge stops: every command gets wait_ms to finish, then SIGTERM, then
 * SIGKILL (child_stop). */
void exec_stop(struct bridge *b, int64_t now, int64_t wait_ms);
/* At exit: what still runs is killed, and everything freed. */
void exec_free(struct bridge *b);

#endif
