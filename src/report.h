/* report.h: what a run says of itself: how a backlog drains (-v), and the summary at exit. */
#ifndef MC_REPORT_H
#define MC_REPORT_H

#include <stdbool.h>
#include <stdint.h>

struct bridge;

struct report {
	bool ran;                /* the bridge got past registration: a summary is due at exit */
	int64_t backlog_since;   /* since when messages wait (0: none) */
	int64_t said_at;         /* when progress was last said */
	long said_handed;        /* what it said then: handed out, */
	long said_answered;      /* and answered */
};

/* Every turn of a running bridge. At -v, once messages have been waiting for
 * a second (fetched and not answered yet, or more pages on the platform):
 * "draining: H handed out, A answered, W waiting" (W: fetched, not answered
 * yet), at most once a second (LOG_PROGRESS_EVERY_MS) and only when H or A
 * changed since the last one. */
void report_tick(struct bridge *b, int64_t now);
/* At exit, once the state is saved, at the info level (silenced by --quiet):
 * "exiting: H handed out, A answered, K kept for the next run, F failed", the
 * counts of inbox_tally; with --log-format json also as the numeric fields
 * handed_out, answered, kept and failed. Nothing when the run never got past
 * registration. */
void report_summary(struct bridge *b);

#endif
