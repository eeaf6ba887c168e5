/* events.h: the platform's event stream as a wake-up: open, read, reconnect with backoff, fall back to polling, trust. */
#ifndef MC_EVENTS_H
#define MC_EVENTS_H

#include <stdbool.h>
#include <stdint.h>

#include "sse.h"

struct bridge;
struct http_req;

#define EVENTS_LINE_MAX (64u << 10)     /* an event's line and data; a longer one still wakes the poll */
#define EVENTS_OPEN_TIMEOUT_MS 15000    /* the answer and its first bytes, or the attempt failed */
#define EVENTS_FIRST_WAIT_MS 2000       /* the first poll waits this long for the stream's first connection */
#define EVENTS_AUTO_FAILURES 5          /* auto: failed attempts in a row before polling alone */
#define EVENTS_YOUNG_MS 10000           /* a stream that ends sooner, with no event, failed */
#define EVENTS_SETTLED_MS 60000         /* one that lived this long ended normally: reconnect soon */
#define EVENTS_MISSES 3                 /* timer polls in a row finding unannounced messages: reconnect, */
#define EVENTS_RECYCLE_MS 300000        /* but not more often than this */
#define EVENTS_WARN_EVERY_MS 300000     /* --events on: a failing stream is reported at most this often */

enum events_state {
	EV_OFF,      /* --events off, --once, given up (auto), or stopping */
	EV_IDLE,     /* waiting to (re)connect at next_try */
	EV_OPENING,  /* asked for; no byte of the stream yet */
	EV_UP,       /* the stream is open: its events wake the poll */
};

struct events {
	enum events_state state;
	struct http_req *req;
	struct sse parser;
	int64_t next_try;        /* EV_IDLE: when to connect */
	int64_t opened_at;       /* when the last attempt was started */
	int64_t up_at;           /* when its first bytes came */
	int failures;            /* attempts in a row that failed */
	int ends;                /* streams in a row that ended before EVENTS_SETTLED_MS */
	bool ever_up;
	bool trusted;            /* its events have come when messages came: the timer can be slow */
	bool recycle;            /* reconnect (set inside a callback, done at the next tick) */
	bool event_seen;         /* an a2a_receive event since the last poll started */
	bool announced;          /* the poll in flight had an event before it */
	bool covered;            /* the poll in flight was the timer's, the stream up all the time since the last */
	int misses;              /* polls in a row that found messages no event announced */
	int64_t recycled_at;     /* when misses last made it reconnect (0: never) */
	unsigned long stream_events; /* events of the stream now open */
	int64_t warned_at;       /* the last warning about a failing stream (0: none in this streak) */
};

void events_init(struct bridge *b);
void events_free(struct bridge *b);
/* Connects when due, gives up an attempt that hangs, reconnects when asked. */
void events_tick(struct bridge *b, int64_t now);
/* Milliseconds until events_tick has something to do (0: now), or -1. */
int64_t events_next_wakeup(struct bridge *b, int64_t now);
/* No more stream (draining, stopping). */
void events_stop(struct bridge *b);

/* The stream is open and has carried the news so far: polls can be the safety net. */
bool events_trusted(const struct bridge *b);
/* While the first connection is under way, polls wait until this time; 0: they need not. */
int64_t events_first_wait(const struct bridge *b);
/* A poll starts: timer says the timer started it, prev_start is when the last one did. */
void events_poll_started(struct bridge *b, bool timer, int64_t prev_start);
/* Its answer brought new_messages. */
void events_polled(struct bridge *b, int new_messages);

#endif
