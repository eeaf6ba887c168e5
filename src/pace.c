/* pace.c: when to poll: the timer's period (steady, quiet, safety net), polls for known work, and the platform's request budget. */
#include <config.h>

#include <math.h>
#include <stdlib.h>

#include "bridge.h"
#include "events.h"
#include "pace.h"
#include "util.h"

/* ---- the budget ------------------------------------------------------- */

void rate_observe(struct rate_est *e, const struct http_rate *s, int64_t now)
{
	if (s->unlimited || s->limit <= 0 || s->remaining < 0 || s->reset_s < 0) {
		if (s->unlimited)
			e->known = false;
		return;
	}
	/* The whole seconds are rounded down: the end lies up to a second later. */
	int64_t reset_at = now + s->reset_s * 1000 + 500;
	e->known = true;
	e->limit = s->limit;
	e->remaining = (double)s->remaining;
	e->t = now;
	e->reset_at = reset_at;
	if (s->reset_s * 1000 + 500 > e->window_ms)
		e->window_ms = s->reset_s * 1000 + 500;
}

double rate_spending(const struct rate_est *e)
{
	if (!e->known)
		return 0;
	int64_t gone = e->t - (e->reset_at - e->window_ms);
	if (gone < e->window_ms / 10)
		gone = e->window_ms / 10;
	double spent = (double)e->limit - e->remaining;
	return gone > 0 && spent > 0 ? spent / (double)gone : 0;
}

double rate_remaining(const struct rate_est *e, int64_t now)
{
	if (!e->known)
		return INFINITY;
	if (now >= e->reset_at)
		return (double)e->limit;
	double r = e->remaining - rate_spending(e) * (double)(now - e->t);
	return r > 0 ? r : 0;
}

double rate_reserve(const struct rate_est *e)
{
	double r = (double)e->limit / 10;
	return r < 2 ? 2 : r;
}

double rate_pressure(const struct rate_est *e, int64_t now)
{
	if (!e->known || now >= e->reset_at)
		return 1;
	double reserve = rate_reserve(e);
	double window = (double)(e->window_ms > 1000 ? e->window_ms : 1000);
	double left = (double)(e->reset_at - now);
	if (left > window)
		left = window;
	double target = reserve + ((double)e->limit - reserve) * left / window;
	double r = rate_remaining(e, now);
	/* A few requests off the even course are noise, not a trend. */
	if (r >= target * 0.95)
		return 1;
	double m = target / (r > 0.5 ? r : 0.5);
	m *= m;
	return m < PACE_PRESSURE_MAX ? m : PACE_PRESSURE_MAX;
}

int64_t rate_hold_until(const struct rate_est *e, int64_t now, bool work)
{
	if (!e->known || now >= e->reset_at)
		return 0;
	double left = work ? e->remaining : rate_remaining(e, now);
	if (left > rate_reserve(e) * (work ? 0.5 : 1.0))
		return 0;
	return e->reset_at + 500;
}

/* ---- the timer -------------------------------------------------------- */

int64_t pace_period_for(double interval, double idle_interval, bool stream_trusted, bool quiet, double pressure)
{
	double secs = interval;
	if (stream_trusted)
		secs = interval * PACE_SAFETY_FACTOR;
	else if (quiet && idle_interval > interval)
		secs = idle_interval;
	double ms = secs * 1000 * (pressure > 1 ? pressure : 1);
	return ms < PACE_PERIOD_MAX_MS ? (int64_t)ms : PACE_PERIOD_MAX_MS;
}

double pace_pressure_for(double now, double at_start)
{
	return now > at_start ? now : at_start;
}

/* ---- the running bridge ----------------------------------------------- */

static void on_rate(void *ctx, const struct http_rate *s)
{
	struct bridge *b = ctx;
	rate_observe(&b->pace.rate, s, now_ms());
}

void pace_init(struct bridge *b)
{
	b->pace.last_activity = now_ms();
	b->pace.jitter = (double)rand() / ((double)RAND_MAX + 1);
	http_on_rate(b->h, on_rate, b);
}

static int64_t timer_period(struct bridge *b, int64_t now)
{
	int64_t quiet_ms = (int64_t)(b->s->idle_interval * 1000 * PACE_QUIET_INTERVALS);
	return pace_period_for(b->s->interval, b->s->idle_interval, events_trusted(b),
			       now - b->pace.last_activity >= quiet_ms,
			       pace_pressure_for(rate_pressure(&b->pace.rate, now), b->pace.start_pressure));
}

static int64_t later(int64_t a, int64_t b)
{
	return a > b ? a : b;
}

/* After a window's end, a fleet sharing the budget spreads its waiting
 * requests over up to a second (a tenth of a short window). */
static int64_t after_hold(const struct pace *pc, int64_t hold)
{
	int64_t spread = pc->rate.window_ms / 10 < 1000 ? pc->rate.window_ms / 10 : 1000;
	return hold + (int64_t)(pc->jitter * (double)spread);
}

int64_t pace_poll_at(struct bridge *b, int64_t now)
{
	struct pace *pc = &b->pace;
	bool timer = b->fetch.next == pc->timer_next;
	int64_t at = timer ? pc->last_start + timer_period(b, now) : b->fetch.next;
	at = later(at, events_first_wait(b));
	double pressure = rate_pressure(&pc->rate, now);
	if (!timer && pressure > 1) {
		/* Work is waiting, but the budget is short: one poll for many events. */
		double gap = pressure - 1 < PACE_WORK_GAP_MAX ? pressure - 1 : PACE_WORK_GAP_MAX;
		at = later(at, pc->last_start + (int64_t)(b->s->interval * 1000 * gap));
	}
	/* At the floor, the timer's polls wait first; polls for work keep half the reserve. */
	int64_t hold = rate_hold_until(&pc->rate, now, !timer);
	if (hold)
		at = later(at, after_hold(pc, hold));
	return at;
}

void pace_poll_started(struct bridge *b, int64_t now)
{
	struct pace *pc = &b->pace;
	events_poll_started(b, b->fetch.next == pc->timer_next, pc->last_start);
	pc->last_start = now;
	pc->start_pressure = rate_pressure(&pc->rate, now);
	/* The timer's own mark: the period is worked out when it is read. */
	b->fetch.next = pc->timer_next = now + timer_period(b, now);
}

void pace_polled(struct bridge *b, int new_messages)
{
	if (new_messages > 0)
		b->pace.last_activity = now_ms();
	events_polled(b, new_messages);
}

void pace_activity(struct bridge *b)
{
	b->pace.last_activity = now_ms();
}

int64_t pace_deferrable_at(struct bridge *b, int64_t now)
{
	int64_t hold = rate_hold_until(&b->pace.rate, now, false);
	return hold ? after_hold(&b->pace, hold) : now;
}
