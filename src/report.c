/* report.c: what a run says of itself: how a backlog drains (-v), and the summary at exit. */
#include <config.h>

#include "report.h"
#include "bridge.h"
#include "inbox.h"
#include "log.h"
#include "util.h"

void report_tick(struct bridge *b, int64_t now)
{
	struct report *rp = &b->report;
	rp->ran = true;
	if (!log_enabled(LV_DEBUG))
		return;
	int waiting = inbox_unfinished(b->ib);
	if (waiting == 0 && !b->fetch.backlog) {
		rp->backlog_since = 0;
		return;
	}
	if (rp->backlog_since == 0) {
		/* A message or two answered at once is no backlog: say nothing
		 * until one has lasted a second. */
		rp->backlog_since = rp->said_at = now;
		return;
	}
	struct inbox_tally t = inbox_tally(b->ib);
	if ((t.handed_out == rp->said_handed && t.answered == rp->said_answered) ||
	    !once_per(&rp->said_at, now, LOG_PROGRESS_EVERY_MS))
		return;
	rp->said_handed = t.handed_out;
	rp->said_answered = t.answered;
	log_debug("draining: %ld handed out, %ld answered, %d waiting", t.handed_out, t.answered, waiting);
}

void report_summary(struct bridge *b)
{
	if (!b->report.ran || !b->ib)
		return;
	struct inbox_tally t = inbox_tally(b->ib);
	const struct log_count counts[] = {
		{ .key = "handed_out", .label = "handed out", .value = t.handed_out },
		{ .key = "answered", .label = "answered", .value = t.answered },
		{ .key = "kept", .label = "kept for the next run", .value = t.kept },
		{ .key = "failed", .label = "failed", .value = t.failed },
	};
	log_counts(LV_INFO, "exiting", counts, sizeof counts / sizeof counts[0]);
}
