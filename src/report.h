/* report.h: what a run says of itself: how a backlog drains (-v), and the summary at exit. */
#ifndef MC_REPORT_H
#define MC_REPORT_H

#include <stdbool.h>
#include <stdint.h>

struct bridge;

struct report {
	bool ran;                /* the bridge got past registration: a summary is due at exit */
	int64_t backlog_since;   /* when messages started waiting to be handed out (0: none wait) */
	int64_t said_at;         /* when progress was last said */
	long said_handed;        /* what it said then: handed out, */
	int said_waiting;        /* and waiting */
};

/* Every turn of a running bridge. At -v, while messages wait to be handed out
 * for more than a second: "draining: H handed out, A answered, W waiting", at
 * most once a second (LOG_PROGRESS_EVERY_MS) and only when a count changed. */
void report_tick(struct bridge *b, int64_t now);
/* At exit, once the state is saved, at the info level (silenced by --quiet):
 * "exiting: H handed out, A answered, K kept for the next run, F failed", the
 * counts of inbox_tally; with --log-format json also as the numeric fields
 * handed_out, answered, kept and failed. Nothing when the run never got past
 * registration. */
void report_summary(struct bridge *b);

#endif
