/* inbox.h: inbound messages from rows to done: their order and states, the done set, the cursor. */
#ifndef MC_INBOX_H
#define MC_INBOX_H

#include <stdbool.h>
#include <stdint.h>
#include <jv.h>
#include "rows.h"
#include "timestamp.h"
#include "util.h"

enum msg_state {
	MSG_QUEUED,    /* fetched, waiting to be handed out */
	MSG_OPEN,      /* handed out, no answer yet */
	MSG_ANSWERED,  /* answered, reply waiting to be posted (post_body set) */
	MSG_POSTING,   /* reply being posted (by this message or by a reply kept from before a restart) */
	MSG_DONE,      /* nothing more to do: the cursor may pass it */
};

struct upload;

struct message {
	struct message *next, *prev; /* the inbox's own links: walk with inbox_first/inbox_next */
	char id[UUID_LEN + 1];
	struct row_key key;     /* where its row stands in the platform's order */
	char *source_id;        /* NULL: the canvas (a person, the platform, an upload) */
	char *context_id;
	char *task_id;          /* the request's taskId, if any (never on the message line) */
	char *summary;          /* a short view of the text, for current_task */
	jv line;                /* the message object (before --filter); null once handed out for good */
	enum msg_state state;
	bool orphan;            /* a reply kept from before a restart, or a new message: not in the list */
	bool outbound;          /* a new message ({"to":...} line), not a reply: always an orphan */
	uint64_t reply_seq;     /* ANSWERED/POSTING: the order replies and new messages were read in */
	bool unsaved;           /* ANSWERED/POSTING: its reply is not in the state file yet */
	bool upload_wait;       /* a canvas upload: not handed out until its file is fetched or given up */
	struct upload *upload;  /* uploads.c's record while it works on the file, or NULL */
	int64_t not_before;     /* QUEUED: not handed out before (monotonic ms) */
	int64_t opened_at;
	int handouts;
	char *post_path;        /* ANSWERED/POSTING: where the reply goes */
	char *post_body;
};

/* The messages of one workspace, from the cursor on, and the replies kept from
 * a previous run. Opaque: everything goes through the functions below. */
struct inbox;

/* st: the loaded state object (not consumed). */
struct inbox *inbox_new(const char *own_id, jv st);
void inbox_free(struct inbox *ib);

/* Adds rows (consumed; oldest first) fetched from the platform. Rows at or
 * before the last done row (inbox_floor) and rows already known are dropped;
 * rows done before a restart, notify echoes, the workspace's own traffic and
 * calls it cannot serve are recorded as done; bad rows are reported and
 * skipped. Returns how many messages were queued. */
int inbox_add_rows(struct inbox *ib, jv rows);
/* The platform answered "nothing newer": ids kept from the state file that did
 * not come back are forgotten (they are below the cursor, or were pruned). */
void inbox_caught_up(struct inbox *ib);
/* A 410: the cursor row is gone; replay by time from now on. */
void inbox_reseed(struct inbox *ib);

/* Where the last done row stands (the cursor's row, or the last one of a
 * previous run): rows up to it are done. false while unknown. */
bool inbox_floor(const struct inbox *ib, struct row_key *out);
/* Where a replay by time (no cursor) must read back to, in the bridge's
 * wall-clock terms: a little before the last done row, else the start of the
 * first start's window. false when neither is known (a first start). */
bool inbox_replay_anchor(const struct inbox *ib, struct ts *out);
/* The first start's window begins at `from`: kept in the state file until a
 * row is done, so a restart that still has no cursor reads back to it. */
void inbox_set_replay_from(struct inbox *ib, struct ts from);

struct message *inbox_find(struct inbox *ib, const char *id);
struct message *inbox_oldest_open(struct inbox *ib);
/* The next message to hand out (QUEUED, due and not waiting for a file), or
 * NULL. */
struct message *inbox_next_queued(struct inbox *ib, int64_t now);
/* The same among messages handed out before in this run only. */
struct message *inbox_next_requeued(struct inbox *ib, int64_t now);
/* Earliest not_before of such a message after now, or -1. */
int64_t inbox_next_due(struct inbox *ib, int64_t now);

void inbox_open(struct inbox *ib, struct message *m, int64_t now);
/* Takes path and body (allocated). */
void inbox_answer(struct inbox *ib, struct message *m, char *path, char *body);
void inbox_done(struct inbox *ib, struct message *m);
/* Done, because its reply was refused for good: counted as failed. */
void inbox_failed(struct inbox *ib, struct message *m);
/* Hand it out again at not_before. */
void inbox_requeue(struct inbox *ib, struct message *m, int64_t not_before);
/* Every OPEN message goes back to QUEUED (the handler was restarted). */
int inbox_requeue_open(struct inbox *ib);
/* A kept reply was posted (or given up): its message is done. */
void inbox_orphan_done(struct inbox *ib, struct message *o);

/* Messages queued or handed out and not answered: what the fetch window counts.
 * Answered ones waiting to be posted do not: they are the outbox's to bound. */
int inbox_unfinished(const struct inbox *ib);
/* Messages handed out and not done yet (OPEN, ANSWERED or POSTING). */
int inbox_open_count(const struct inbox *ib);
/* Messages handed out and not answered yet (OPEN): what the hand-out window counts. */
int inbox_handed_count(const struct inbox *ib);

/* A new message ({"to":...} line) to post: kept with the replies from a previous
 * run, in the order read, saved with them. dest: the peer, NULL for the canvas.
 * Takes path and body (allocated); id is its messageId (a fresh UUID). */
struct message *inbox_add_outbound(struct inbox *ib, const char *id, const char *dest, char *path, char *body);
/* The fetch reached the newest row (a page that was not full): a kept reply
 * whose row did not come back is below the cursor, and can be posted. */
void inbox_fetch_complete(struct inbox *ib);
bool inbox_kept_released(const struct inbox *ib);
/* Kept replies whose rows came back take their message's place in the list,
 * so they are posted in message order. Returns how many did. */
int inbox_adopt_kept(struct inbox *ib);

/* Canvas uploads still waiting for their file; m's is ready (fetched or given
 * up): it may be handed out. */
int inbox_uploads_waiting(const struct inbox *ib);
void inbox_upload_ready(struct inbox *ib, struct message *m);

/* Messages handed out in this run and not done yet, those put back to be
 * handed out again included. */
int inbox_in_play(const struct inbox *ib);
/* Messages without an answer yet, handed out or not (QUEUED or OPEN). */
int inbox_unanswered(const struct inbox *ib);
/* Messages handed out in this run and done since (answered and posted,
 * acknowledged, or dropped by --filter): what --max-messages counts. */
long inbox_done_count(const struct inbox *ib);
/* What became of the messages handed out in this run, each counted once:
 * handed_out = answered + kept + failed. */
struct inbox_tally {
	long handed_out;
	long answered;  /* done: reply posted, acknowledged, or dropped by --filter */
	long kept;      /* not done: no answer yet, or its reply not posted (kept in the state file) */
	long failed;    /* done: its reply refused for good by the platform, dropped */
};
struct inbox_tally inbox_tally(const struct inbox *ib);
/* Messages queued and not handed out yet (a backlog waiting). */
int inbox_queued_count(const struct inbox *ib);
/* The oldest message handed out and not done, or NULL: the heartbeat's current task. */
struct message *inbox_oldest_active(struct inbox *ib);

/* Every message, in the order replies are posted: the replies kept from a
 * previous run (orphan set) in reading order, then the list in platform order
 * (DONE ones included until the cursor passes them). inbox_next(ib, NULL)
 * is inbox_first(ib). Nothing may be added or removed during a walk. */
struct message *inbox_first(struct inbox *ib);
struct message *inbox_next(struct inbox *ib, struct message *m);

/* The saved cursor: the last row of the done prefix ("" while there is none). */
const char *inbox_cursor(const struct inbox *ib);
/* The last row fetched: polls continue after it. "" means cold: replay by time. */
const char *inbox_fetch_cursor(const struct inbox *ib);

/* Something the state file holds has changed since the last save. */
bool inbox_dirty(const struct inbox *ib);
/* Replies read and neither posted nor in the state file yet. */
int inbox_unsaved_replies(const struct inbox *ib);

/* Writes last_since_id, done_seq, done_at, replay_from, done_ids and replies
 * into st (consumed, returned). Marks nothing as saved: that is inbox_saved's,
 * once the file is written. */
jv inbox_state(struct inbox *ib, jv st);
/* What the last inbox_state held is in the state file now. Returns the seq to
 * acknowledge (the highest below which everything is done), or -1 if none. */
int64_t inbox_saved(struct inbox *ib);

#endif
