/* save.h: when the state file is written: saves coalesced, and failed saves reported. */
#ifndef MC_SAVE_H
#define MC_SAVE_H

#include <stdbool.h>
#include <stdint.h>
#include "util.h"

struct bridge;

/* The rule. A reply goes to the platform at once and is written to the state
 * file only if it is still unposted SAVE_REPLY_MS after it was read (posts
 * usually take far less); any other change waits up to SAVE_EVERY_MS, so a
 * busy bridge saves a few times a second, not once a message. A crash before
 * the save leaves its message not done: it is handed out again, never lost. */
#define SAVE_EVERY_MS 200
#define SAVE_REPLY_MS 50
/* A failed save leaves everything marked unsaved, so the next one writes it
 * all; it is tried again SAVE_EVERY_MS later. */

struct saver {
	int64_t dirty_since;     /* when unsaved changes were first seen (0: none) */
	int64_t unsaved_since;   /* when replies not in the state file were first seen (0: none) */
	int failures;            /* failed saves in a row */
	int64_t retry_at;        /* after a failed save, not again before this */
	int64_t warned;          /* when a failed save was last reported */
	char cursor[UUID_LEN + 1]; /* the cursor the last successful save wrote ("" before one) */
};

/* When the next save is due (now_ms() terms), or -1 for none, given whether
 * anything changed (dirty) and how many replies are read but neither posted
 * nor saved, and not before sv->retry_at. Notes in sv when each was first seen. */
int64_t save_due_at(struct saver *sv, bool dirty, int unsaved_replies, int64_t now);

/* The same for the running bridge. */
int64_t save_due(struct bridge *b, int64_t now);
/* Saves when due (the loop calls it every turn). */
void save_if_due(struct bridge *b);
/* Saves now: an adopted token, and at exit. */
void save_now(struct bridge *b);

#endif
