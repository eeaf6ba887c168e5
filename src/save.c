/* save.c: when the state file is written (the coalescing rule of save.h), how a failed save is reported and retried. */
#include <config.h>

#include <stdlib.h>
#include <string.h>

#include "ack.h"
#include "bridge.h"
#include "inbox.h"
#include "log.h"
#include "state.h"
#include "util.h"

int64_t save_due_at(struct saver *sv, bool dirty, int unsaved_replies, int64_t now)
{
	if (unsaved_replies == 0)
		sv->unsaved_since = 0;
	else if (sv->unsaved_since == 0)
		sv->unsaved_since = now;
	if (!dirty) {
		sv->dirty_since = 0;
		return -1;
	}
	if (sv->dirty_since == 0)
		sv->dirty_since = now;
	int64_t due = sv->dirty_since + SAVE_EVERY_MS;
	if (sv->unsaved_since && sv->unsaved_since + SAVE_REPLY_MS < due)
		due = sv->unsaved_since + SAVE_REPLY_MS;
	if (sv->retry_at > due)
		due = sv->retry_at;
	return due;
}

int64_t save_due(struct bridge *b, int64_t now)
{
	return save_due_at(&b->save, inbox_dirty(b->ib), inbox_unsaved_replies(b->ib), now);
}

static void save(struct bridge *b, bool force)
{
	struct saver *sv = &b->save;
	int64_t now = now_ms();
	int64_t due = save_due(b, now);
	if (!force && (due < 0 || now < due))
		return;
	b->st = inbox_state(b->ib, b->st);
	sv->unsaved_since = sv->dirty_since = 0;
	char *err = NULL;
	if (state_save(b->s->state_dir, b->s->workspace_id, b->st, &err) != 0) {
		/* Nothing is lost: the saved cursor just stays behind. Say so, not in
		 * a flood (once a minute while it lasts), and always at the last save. */
		bool say = ++sv->failures == 1 || now - sv->warned >= 60000;
		if (b->phase == PH_END)
			log_error("%s: the state is not saved at exit; messages done since the last save will be handed out again",
				  err);
		else if (say)
			log_error("%s (the cursor is not moving on disk; messages may be handed out again after a restart%s)",
				  err, sv->failures > 1 ? "; still failing" : "");
		if (say)
			sv->warned = now;
		free(err);
		/* The inbox still counts everything as unsaved; the next attempt
		 * waits as a change would, not the shorter time a reply gets. */
		sv->retry_at = now + SAVE_EVERY_MS;
		return;
	}
	int64_t seq = inbox_saved(b->ib);
	/* The cursor written is the one inbox_state took: nothing ran since. */
	const char *cursor = inbox_cursor(b->ib);
	if (strcmp(cursor, sv->cursor) != 0) {
		if (seq >= 0)
			log_debug("saved: the cursor is at activity row %s, done up to seq %lld", cursor, (long long)seq);
		else
			log_debug("saved: the cursor is at activity row %s", cursor);
		memcpy(sv->cursor, cursor, sizeof sv->cursor);
	}
	if (sv->failures) {
		char *path = xasprintf("%s/%s.json", b->s->state_dir, b->s->workspace_id);
		log_info("state file %s writable again after %d failed saves: the cursor on disk is current", path,
			 sv->failures);
		free(path);
		sv->failures = 0;
	}
	ack_saved(b, seq);
}

void save_if_due(struct bridge *b)
{
	save(b, false);
}

void save_now(struct bridge *b)
{
	save(b, true);
}
