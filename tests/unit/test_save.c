/* test_save.c: when a save is due: changes coalesced over SAVE_EVERY_MS, an unposted reply within SAVE_REPLY_MS. */
#include <config.h>

#include "tap.h"
#include "save.h"

int main(void)
{
	struct saver sv = { 0 };

	is_int(save_due_at(&sv, false, 0, 1000), -1, "nothing changed: no save due");

	/* Changes without a reply: coalesced from the first one seen. */
	is_int(save_due_at(&sv, true, 0, 1000), 1000 + SAVE_EVERY_MS, "a change: due SAVE_EVERY_MS after it was seen");
	is_int(save_due_at(&sv, true, 0, 1150), 1000 + SAVE_EVERY_MS, "more changes later: still due from the first");
	is_int(save_due_at(&sv, true, 1, 1160), 1000 + SAVE_EVERY_MS,
	       "a reply read near the end of the window: the change rule comes first");

	/* A reply read and not posted: due sooner, counted from when it was read. */
	struct saver r = { 0 };
	is_int(save_due_at(&r, true, 0, 2000), 2000 + SAVE_EVERY_MS, "another change");
	is_int(save_due_at(&r, true, 1, 2010), 2010 + SAVE_REPLY_MS, "an unposted reply: due SAVE_REPLY_MS after it was read");
	is_int(save_due_at(&r, true, 2, 2030), 2010 + SAVE_REPLY_MS, "a second reply does not push the save back");
	is_int(save_due_at(&r, true, 0, 2040), 2000 + SAVE_EVERY_MS, "replies posted in time: back to SAVE_EVERY_MS");
	is_int(save_due_at(&r, true, 1, 2100), 2100 + SAVE_REPLY_MS, "a new reply counts from its own reading");

	/* Saved (nothing dirty): both clocks start over. */
	is_int(save_due_at(&r, false, 0, 2120), -1, "after the save: none due");
	is_int(r.dirty_since, 0, "the change clock is reset");
	is_int(r.unsaved_since, 0, "the reply clock is reset");
	is_int(save_due_at(&r, true, 0, 5000), 5000 + SAVE_EVERY_MS, "the next change counts from itself");

	struct saver first = { 0 };
	is_int(save_due_at(&first, true, 1, 3000), 3000 + SAVE_REPLY_MS, "a reply as the first change: SAVE_REPLY_MS");

	/* A failed save: everything is still unsaved, and the next attempt waits. */
	struct saver failed = { .retry_at = 4000 + SAVE_EVERY_MS };
	is_int(save_due_at(&failed, true, 1, 4000), 4000 + SAVE_EVERY_MS, "after a failed save: not before retry_at");
	struct saver later = { .retry_at = 100 };
	is_int(save_due_at(&later, true, 1, 5000), 5000 + SAVE_REPLY_MS, "a retry_at long past changes nothing");
	return done_testing();
}
