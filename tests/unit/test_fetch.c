/* test_fetch.c: the fetch window, its byte bound, the room to poll, and how many rows a poll asks for. */
#include <config.h>

#include "tap.h"
#include "fetch.h"

static void test_window(void)
{
	is_int(fetch_window_for(16, 0), 16, "row size unknown: --max-inflight");
	is_int(fetch_window_for(16, 100), 16, "small rows: --max-inflight");
	is_int(fetch_window_for(16, FETCH_WINDOW_BYTES / 16), 16, "rows that just fit: --max-inflight");
	is_int(fetch_window_for(16, FETCH_WINDOW_BYTES / 16 + 1), 15, "one byte more a row: one message fewer");
	is_int(fetch_window_for(16, 1L << 20), 4, "1 MiB rows: four of them make the byte bound");
	is_int(fetch_window_for(16, FETCH_WINDOW_BYTES * 2), 1, "rows above the byte bound: still one at a time");
	is_int(fetch_window_for(1, 1L << 20), 1, "--max-inflight 1 stays 1");
}

static void test_room(void)
{
	ok(!fetch_room_for(16, 16, false), "a full window has no room");
	ok(!fetch_room_for(4, 5, false), "an overfull window (the bound shrank) has no room");
	ok(fetch_room_for(16, 15, false), "one free place is room enough while no backlog waits");
	ok(!fetch_room_for(16, 9, true), "a backlog waits for half a window (7 of 16 free)");
	ok(fetch_room_for(16, 8, true), "a backlog polls with half a window free (8 of 16)");
	ok(!fetch_room_for(3, 2, true), "a backlog, window 3: one free is not half");
	ok(fetch_room_for(3, 1, true), "a backlog, window 3: two free is half, rounded up");
	ok(fetch_room_for(1, 0, true), "a backlog, window 1: an empty window polls");
}

static void test_limit(void)
{
	is_int(fetch_limit_for(true, 16, 0, 0), FETCH_COLD_LIMIT, "cold: the platform's page, whatever the room");
	is_int(fetch_limit_for(true, 1, 5000, 0), FETCH_COLD_LIMIT, "cold with a known row size: still the whole page");
	is_int(fetch_limit_for(true, 16, 0, 100), 100, "cold after an oversized page: the page cap");
	is_int(fetch_limit_for(false, 16, 0, 0), FETCH_FIRST_PAGE, "first warm page: a few rows while their size is unknown");
	is_int(fetch_limit_for(false, 3, 0, 0), 3, "first warm page: less when the room is less");
	is_int(fetch_limit_for(false, 16, 300, 0), 16, "warm: the room in the window");
	is_int(fetch_limit_for(false, 10000, 300, 0), FETCH_MAX_LIMIT, "warm: never above the platform's page cap");
	is_int(fetch_limit_for(false, 16, 300, 7), 7, "warm after an oversized page: the page cap");
	is_int(fetch_limit_for(false, 5, 300, 7), 5, "a page cap above the room changes nothing");
	is_int(fetch_limit_for(false, 16, 0, 2), 2, "the page cap applies to a first page too");
}

int main(void)
{
	test_window();
	test_room();
	test_limit();
	return done_testing();
}
