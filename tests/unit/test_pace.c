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
	ok(pace_pressure_for(3, 1) == 3, "pressure that rose since the last poll stretches the wait at once");
	ok(pace_pressure_for(1, 3) == 3, "pressure that eased shortens only the wait after the next poll");
	ok(pace_pressure_for(1, 0) == 1, "before any poll: the pressure now");
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
	ok(fabs(rate_spending(&e) - 1.0 / 5950) < 1e-12,
	   "at the window's start, spending is averaged over a tenth of it at least");
	/* Half the window gone, 300 spent by the org: 10 a second. */
	h = hdr(600, 300, 29);
	rate_observe(&e, &h, 130000);
	is_int(e.reset_at, 159500, "the same window");
	ok(fabs(rate_spending(&e) - 300.0 / 30000) < 1e-12, "the org's spending: what is gone over the time gone");
	ok(fabs(rate_remaining(&e, 131000) - 290) < 1e-6, "a second later, 10 fewer are left");
	ok(rate_remaining(&e, 200000) == 600, "after the window's end: the whole budget again");
	ok(fabs(rate_remaining(&e, 159400) - 6) < 1e-6, "just before the end: what the spending leaves");
	/* A new window starts from its own figures. */
	h = hdr(600, 590, 59);
	rate_observe(&e, &h, 160000);
	ok(e.remaining == 590 && e.reset_at == 160000 + 59500, "a new window starts from its own figures");
	ok(fabs(rate_spending(&e) - 10.0 / 5950) < 1e-12, "and its own spending");
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
	is_int(rate_hold_until(&f, 0, false), 0, "above the reserve: timer polls may go");
	f.remaining = 60;
	is_int(rate_hold_until(&f, 0, false), f.reset_at + 500, "at the reserve: they wait for the window's end");
	is_int(rate_hold_until(&f, 0, true), 0, "polls for work keep half the reserve");
	f.remaining = 30;
	is_int(rate_hold_until(&f, 0, true), f.reset_at + 500, "and wait below it");
	is_int(rate_hold_until(&f, f.reset_at, true), 0, "the window over: nothing held");
	/* What others spend meanwhile counts for the timer, not for work. */
	struct rate_est g2 = { 0 };
	h = hdr(600, 100, 29);
	rate_observe(&g2, &h, 0);
	g2.window_ms = 60000;
	/* 500 gone in 30.5 s: about 16 a second, so 3 s later about 50 are left. */
	is_int(rate_hold_until(&g2, 0, false), 0, "the last figure above the reserve: a timer poll may go");
	is_int(rate_hold_until(&g2, 3000, false), g2.reset_at + 500, "3 s of the org's spending later, it waits");
	is_int(rate_hold_until(&g2, 3000, true), 0, "a poll for work is held only on the platform's own figure");
	ok(rate_remaining(&g2, 20000) == 0, "never below nothing");
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
