/* test_pace.c: the timer's period, and what the rate-limit headers say of the budget: spending, pressure, the floor. */
#include <config.h>

#include <math.h>

#include "tap.h"
#include "pace.h"

static struct http_rate hdr(long limit, long remaining, long reset_s)
{
	return (struct http_rate){ .status = 200, .limit = limit, .remaining = remaining, .reset_s = reset_s };
}

static void test_period(void)
{
	is_int(pace_period_for(1, 5, false, false, 1), 1000, "messages flow: --interval");
	is_int(pace_period_for(1, 5, false, true, 1), 5000, "quiet: --idle-interval");
	is_int(pace_period_for(2, 0.5, false, true, 1), 2000, "an idle interval below --interval never speeds up");
	is_int(pace_period_for(1, 5, true, false, 1), 10000, "the stream trusted: the safety net, --interval x 10");
	is_int(pace_period_for(1, 5, true, true, 1), 10000, "the stream trusted and quiet: still the safety net");
	is_int(pace_period_for(1, 5, true, false, 2.5), 25000, "pressure stretches the period");
	is_int(pace_period_for(0.05, 5, false, false, 0.3), 50, "pressure never shortens it");
	is_int(pace_period_for(3600, 3600, true, false, 60), PACE_PERIOD_MAX_MS, "never beyond an hour");
}

static void test_unknown(void)
{
	struct rate_est e = { 0 };
	ok(isinf(rate_remaining(&e, 1000)), "no headers: the budget is unknown");
	ok(rate_pressure(&e, 1000) == 1, "no headers: no pressure");
	is_int(rate_hold_until(&e, 1000, 1), 0, "no headers: nothing held");
	struct http_rate u = { .status = 200, .unlimited = true, .limit = -1, .remaining = -1, .reset_s = -1 };
	rate_observe(&e, &u, 1000);
	ok(!e.known, "unlimited: no budget to keep");
	struct http_rate h = hdr(600, 10, 30);
	rate_observe(&e, &h, 1000);
	ok(e.known, "a limited answer makes it known");
	rate_observe(&e, &u, 2000);
	ok(!e.known, "and a later unlimited one forgets it");
	struct http_rate partial = { .status = 200, .limit = 600, .remaining = -1, .reset_s = 30 };
	struct rate_est f = { 0 };
	rate_observe(&f, &partial, 1000);
	ok(!f.known, "headers without Remaining say nothing");
}

static void test_spending(void)
{
	struct rate_est e = { 0 };
	struct http_rate h = hdr(600, 599, 59);
	rate_observe(&e, &h, 100000);
	is_int(e.reset_at, 100000 + 59500, "the window ends in the middle of its last whole second");
	is_int(e.window_ms, 59500, "its length is learnt from the time to reset");
	ok(rate_remaining(&e, 100000) == 599, "what is left: the last figure");
	ok(rate_pressure(&e, 100000) == 1, "a full budget: no pressure");
	/* Others spent 99 in 9 s (on top of this bridge's one request). */
	h = hdr(600, 500, 50);
	rate_observe(&e, &h, 109000);
	ok(fabs(e.use_per_ms - 99.0 / 9000) < 1e-9, "the org's spending: 11 a second");
	ok(fabs(rate_remaining(&e, 110000) - (500 - 11)) < 1e-6, "a second later, 11 fewer are left");
	ok(rate_remaining(&e, 200000) == 600, "after the window's end: the whole budget again");
	/* A new window: spending carries over, the figure is new. */
	h = hdr(600, 590, 59);
	rate_observe(&e, &h, 160000);
	ok(e.remaining == 590 && e.reset_at == 160000 + 59500, "a new window starts from its own figures");
	ok(fabs(e.use_per_ms - 99.0 / 9000) < 1e-9, "no spending is learnt across windows");
	/* Parallel answers out of order: never a negative spending. */
	h = hdr(600, 595, 59);
	rate_observe(&e, &h, 160100);
	ok(e.use_per_ms >= 0, "an older figure arriving late counts as no spending");
}

static void test_pressure(void)
{
	struct rate_est e = { 0 };
	/* Half the window gone, half the budget left: on course. */
	struct http_rate h = hdr(600, 330, 29);
	rate_observe(&e, &h, 0);
	e.window_ms = 60000;
	ok(rate_pressure(&e, 0) == 1, "spending evenly towards the reserve: no pressure");
	ok(fabs(rate_reserve(&e) - 60) < 1e-9, "the reserve: a tenth of the limit");
	/* Half the window gone, a quarter left: twice short, four times slower. */
	struct rate_est f = e;
	f.remaining = 165;
	double want = (60 + 540 * 29500.0 / 60000) / 165;
	ok(fabs(rate_pressure(&f, 0) - want * want) < 1e-6, "short of the even course: the square of the shortfall");
	f.remaining = 1;
	ok(rate_pressure(&f, 0) == PACE_PRESSURE_MAX, "almost nothing left: stretched to the most");
	/* The floor. */
	f.remaining = 61;
	is_int(rate_hold_until(&f, 0, 1.0), 0, "above the reserve: timer polls may go");
	f.remaining = 60;
	is_int(rate_hold_until(&f, 0, 1.0), f.reset_at + 500, "at the reserve: they wait for the window's end");
	is_int(rate_hold_until(&f, 0, 0.5), 0, "polls for work keep half the reserve");
	f.remaining = 30;
	is_int(rate_hold_until(&f, 0, 0.5), f.reset_at + 500, "and wait below it");
	is_int(rate_hold_until(&f, f.reset_at, 0.5), 0, "the window over: nothing held");
	/* A small limit keeps a reserve of 2. */
	struct rate_est g = { 0 };
	h = hdr(10, 5, 1);
	rate_observe(&g, &h, 0);
	ok(rate_reserve(&g) == 2, "a limit of 10 keeps 2");
}

int main(void)
{
	test_period();
	test_unknown();
	test_spending();
	test_pressure();
	return done_testing();
}
