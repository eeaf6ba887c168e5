/* runlimit.h: the bounds of a run: --once (everything waiting now, within --drain-timeout) and --max-messages (messages done). */
#ifndef MC_RUNLIMIT_H
#define MC_RUNLIMIT_H

#include <stdbool.h>
#include <stdint.h>

struct bridge;
struct message;

/*
 * --once hands out everything waiting when it starts (every page), waits for
 * the replies, posts them, saves and exits 0. The whole run, reaching the
 * platform included, is bounded by --drain-timeout: when it is up, what is
 * not done is kept for the next run (exit 0, with a warning), or, if no poll
 * ever got an answer, the platform could not be reached (exit 1).
 * --max-messages N ends the run once N messages handed out in it are done
 * (answered and posted, acknowledged, or dropped by --filter). At most N
 * distinct messages are handed out: a new one only while fewer than N are done
 * or in play, while one handed out before (a retry, a restarted handler) goes
 * out again whenever it is due, so it is not counted twice and replies that
 * wait for it (replies to one peer keep their order) are not held for ever.
 */
struct runlimit {
	int64_t final_save;      /* when the complete work was saved (0: not yet): its ack is awaited briefly */
};

/* More rows are wanted from the platform. */
bool runlimit_fetch_wanted(struct bridge *b);
/* m may be handed out within the bounds: always when it was handed out before. */
bool runlimit_may_hand_out(struct bridge *b, const struct message *m);
/* Ends the run when its work is complete or its time is up (every turn, every phase). */
void runlimit_tick(struct bridge *b, int64_t now);
/* Milliseconds until the run's time is up, or -1 when it has no end. */
int64_t runlimit_next_wakeup(const struct bridge *b, int64_t now);

#endif
