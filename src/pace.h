/* pace.h: when to poll: the timer's period (steady, quiet, safety net), polls for known work, and the platform's request budget. */
#ifndef MC_PACE_H
#define MC_PACE_H

#include <stdbool.h>
#include <stdint.h>

#include "http.h"

struct bridge;

#define PACE_QUIET_INTERVALS 12   /* no message for this many --idle-interval: poll at --idle-interval */
#define PACE_SAFETY_FACTOR 10     /* the event stream carries the news: the timer polls at --interval x this */
#define PACE_PRESSURE_MAX 60.0    /* the budget stretches the timer's period at most this much */
#define PACE_PERIOD_MAX_MS 3600000 /* and never beyond an hour */
#define PACE_WORK_GAP_MAX 1.0     /* under pressure, polls for known work are up to --interval x this apart */

/*
 * What the platform's rate-limit headers say of the budget this bridge shares
 * (on a multi-tenant platform, with every workspace of its org). A fixed window:
 * `limit` requests, refilled whole when it ends. The headers give what is left
 * and the whole seconds to the window's end. Between two answers others spend
 * too: what is left now is guessed from the org's average spending in the window
 * so far (what is gone over the time gone, at least a tenth of the window, so
 * that a burst at its start does not count as a rate).
 */
struct rate_est {
	bool known;               /* a limited budget was announced */
	long limit;
	double remaining;         /* at t */
	int64_t t;                /* when the last answer came (monotonic ms) */
	int64_t reset_at;         /* its window's end, the middle of what the whole seconds allow */
	int64_t window_ms;        /* the window's length, from the longest time-to-reset seen */
};

/* One answer's rate-limit headers, received at now. Without a limit (none, or
 * "unlimited") the budget is unknown: no pacing. */
void rate_observe(struct rate_est *e, const struct http_rate *s, int64_t now);
/* The budget left at now: the last figure less what the org spends meanwhile. */
double rate_remaining(const struct rate_est *e, int64_t now);
/* The org's average spending in the window so far, requests a millisecond. */
double rate_spending(const struct rate_est *e);
/* The reserve kept for replies and heartbeats: a tenth of the limit, at least 2. */
double rate_reserve(const struct rate_est *e);
/* How much to stretch deferrable polls (1: not at all). The budget should last
 * the window: when what is left falls below an even spending towards the
 * reserve, polls slow down by the square of the shortfall, so a fleet that
 * shares the budget slows down together and keeps within it. */
double rate_pressure(const struct rate_est *e, int64_t now);
/* At the reserve, requests that can wait do so until the window is surely
 * over: its time; 0 when they may go now. A timer poll waits when the guess of
 * what is left is at the reserve; a poll for known work only when the last
 * figure the platform gave is at half of it. */
int64_t rate_hold_until(const struct rate_est *e, int64_t now, bool work);

/* The pressure a timer poll waits under: what the budget says now, or what it
 * said when the last poll started if that was more (see pace_poll_at). */
double pace_pressure_for(double now, double at_start);
/* The timer's period in ms: --interval, --idle-interval once quiet (never below
 * --interval), --interval x PACE_SAFETY_FACTOR while the event stream is
 * trusted; times pressure, at most PACE_PERIOD_MAX_MS. */
int64_t pace_period_for(double interval, double idle_interval, bool stream_trusted, bool quiet, double pressure);

struct pace {
	struct rate_est rate;
	int64_t last_start;       /* the last poll started then (0: none yet) */
	int64_t timer_next;       /* fetch.next as the timer set it: still equal, the next poll is the timer's */
	int64_t last_activity;    /* a message came or a reply was posted */
	double jitter;            /* 0..1: this bridge's place in the spread after a window's end */
	double start_pressure;    /* the budget's pressure when the last poll started */
};

void pace_init(struct bridge *b);
/* When the next poll may start (now_ms() terms). A timer poll follows the last
 * by the current period, whatever changed since (the stream, a message, the
 * budget rising); pressure that eases shortens only the periods after the
 * next poll, so that a fleet sharing the budget does not poll all at once the
 * moment it eases (each poll waits out the pressure it started under); a poll for known work (an event, a full page, a retry) is due when
 * fetch.next says, coalesced under pressure. Both wait while the budget is at
 * its floor, and the first poll waits for the event stream's first connection,
 * which brings its own poll. */
int64_t pace_poll_at(struct bridge *b, int64_t now);
/* A poll starts now: the timer is set from here. */
void pace_poll_started(struct bridge *b, int64_t now);
/* Its answer was taken: new_messages came with it. */
void pace_polled(struct bridge *b, int new_messages);
/* A reply was posted: the conversation goes on, poll at --interval again. */
void pace_activity(struct bridge *b);
/* When a request that can wait (the event stream's connection) may go. */
int64_t pace_deferrable_at(struct bridge *b, int64_t now);

#endif
