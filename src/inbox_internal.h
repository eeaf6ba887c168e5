/* inbox_internal.h: what inbox.c and inbox_state.c share: the inbox record, its id sets, freeing a message. */
#ifndef MC_INBOX_INTERNAL_H
#define MC_INBOX_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <jv.h>

#include "inbox.h"
#include "json.h"
#include "rows.h"
#include "timestamp.h"
#include "util.h"

/* Ids done recently, remembered so a re-seed after a 410 or a cold replay does
 * not hand out again what was just done. */
#define RECENT 4096

struct inbox {
	char own_id[UUID_LEN + 1];
	struct message *head, *tail; /* platform order, from just after the cursor */
	struct message *orphans;     /* replies kept from a previous run, in reading order */
	int count;                   /* messages in the list */
	int n_open;                  /* handed out and not done */
	int n_queued;                /* in the list, QUEUED */
	int n_answered;              /* in the list, ANSWERED or POSTING */
	uint64_t reply_seq;          /* replies and new messages read so far */
	bool kept_released;          /* the fetch caught up: kept replies not seen again can go */
	char cursor[UUID_LEN + 1];   /* last row of the done prefix ("" = none yet) */
	char fetch_cursor[UUID_LEN + 1]; /* last row fetched ("" = cold: replay by time) */
	jv done_ids;                 /* object: done above the cursor, not seen again yet */
	jv pending_ids;              /* object: ids whose kept reply is being posted */
	jv recent;                   /* object: ids done recently (de-duplicates a re-seed) */
	char (*recent_ring)[UUID_LEN + 1];
	int recent_pos;
	bool have_floor;             /* floor is known */
	struct row_key floor;        /* where the cursor's row stands: rows up to it are done */
	bool have_replay_from;       /* the first start's window, until a row is done */
	struct ts replay_from;
	bool dirty;                  /* something the state file holds has changed */
	int unsaved_replies;         /* replies read, not posted, not in the state file yet */
	int uploads_waiting;         /* messages waiting for their file */
	long handed_count;           /* handed out in this run (each message once) */
	long done_count;             /* handed out in this run and done */
	long failed_count;           /* of those, done because their reply was refused for good */
	int64_t state_ack;           /* the seq to acknowledge as of the last inbox_state (-1: none) */
};

/* Sets of ids: jv objects whose keys are the ids. */
static inline bool inbox_set_has(jv set, const char *id) { return json_has(set, id); }
static inline jv inbox_set_add(jv set, const char *id) { return jv_object_set(set, jv_string(id), jv_true()); }
static inline jv inbox_set_del(jv set, const char *id) { return jv_object_delete(set, jv_string(id)); }

void inbox_message_free(struct message *m);
/* Fills a new inbox from the state object st (not consumed): the cursor, the
 * last done row, the first start's window, the done ids, the kept replies. */
void inbox_load(struct inbox *ib, jv st);

#endif
