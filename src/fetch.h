/* fetch.h: the activity fetch: when to poll, how many rows to ask for (window, byte bound, page cap), what a page brings. */
#ifndef MC_FETCH_H
#define MC_FETCH_H

#include <stdbool.h>
#include <stdint.h>

#include "rows.h"
#include "timestamp.h"

struct bridge;
struct http_req;

/* Rows per replay-by-time page: the platform's cap, so that a backlog is
 * read back in as few pages as it takes. */
#define FETCH_COLD_LIMIT 500
#define FETCH_MAX_LIMIT 500                /* the platform's page cap */
#define FETCH_WINDOW_BYTES (4L << 20)      /* the fetch window holds about this much activity at most */
#define FETCH_FIRST_PAGE 4                 /* rows asked for while their size is unknown */

/*
 * A replay by time (no cursor: a first start, a restart that finished nothing,
 * a 410) reads the window newest first. While a page comes back full and has
 * not reached the last done row, it is dropped and the next page asked with
 * before_ts just after its oldest row (rows sharing that time come again and
 * are told apart by seq, so none is cut at the boundary). The first page that
 * is not full, or reaches the last done row, holds the oldest rows of the
 * window: it is handed out oldest first, and reading goes on forward with
 * since_id from its newest row, which brings the dropped pages back in order.
 * So at most one page (FETCH_COLD_LIMIT rows) is held, however large the
 * backlog.
 */
struct fetcher {
	struct http_req *req;    /* the poll in flight, or NULL */
	int64_t next;            /* when the next poll is due */
	long limit;              /* the page size asked for: a full page means more may wait */
	long row_bytes;          /* average size of an activity row in the last page (0: none yet) */
	long page_cap;           /* at most this many rows a page after one too large to take (0: none) */
	bool backlog;            /* the last page was full */
	bool polled_once;        /* a poll has succeeded (401/403/404 are fatal before) */
	bool caught_up;          /* the last poll found nothing more waiting */
	bool paging_back;        /* a replay is reading back before `bound` */
	struct row_key bound;    /* the oldest row of the last full replay page */
	long pages_back;
	int64_t progress_at;     /* when reading back was last reported (-v) */
	int failures;
};

/* The rules, as functions of their inputs. */

/* The fetch window: max_inflight messages, fewer when rows of row_bytes
 * (0: unknown) would hold more than FETCH_WINDOW_BYTES; at least one. */
long fetch_window_for(long max_inflight, long row_bytes);
/* Room enough to poll with unfinished messages in a window: any room, but
 * while a backlog drains half a window (or an empty one), so each request
 * brings a useful page rather than one row. */
bool fetch_room_for(long window, long unfinished, bool backlog);
/* Seconds of a replay by time reading back to anchor (the bridge's wall
 * clock), at least since_secs and 1, at most the platform's 30 days. */
long fetch_replay_secs(struct ts anchor, struct ts now, long since_secs);
/* Rows to ask for. cold (no cursor: a replay by time): FETCH_COLD_LIMIT.
 * Else the room in the window, at most FETCH_MAX_LIMIT, and FETCH_FIRST_PAGE
 * while the size of a row is unknown (row_bytes 0). Never above page_cap
 * (0: none), set after a page too large to take. */
long fetch_limit_for(bool cold, long room, long row_bytes, long page_cap);

/* The same for the running bridge. */
long fetch_window(struct bridge *b);
/* Starts a poll when one is due, wanted and has room. */
void fetch_tick(struct bridge *b, int64_t now);
/* Milliseconds until the next poll is due (0: now), or -1 when none is wanted. */
int64_t fetch_next_wakeup(struct bridge *b, int64_t now);
/* Poll at `at` (now_ms() terms) rather than later. */
void fetch_wake(struct bridge *b, int64_t at);
/* Drops the poll in flight: its rows stay on the platform, the cursor has not moved past them. */
void fetch_cancel(struct bridge *b);
/* Nothing more waits on the platform now, and no poll is in flight. */
bool fetch_caught_up(const struct bridge *b);

#endif
