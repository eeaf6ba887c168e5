/* inbox.h: inbound messages from rows to done: order, the in-flight window,
 * what is done above the cursor, and the cursor itself. */
#ifndef MC_INBOX_H
#define MC_INBOX_H

#include <stdbool.h>
#include <stdint.h>
#include <jv.h>
#include "util.h"

enum msg_state {
	MSG_QUEUED,    /* fetched, waiting to be handed out */
	MSG_OPEN,      /* handed out, no answer yet */
	MSG_ANSWERED,  /* answered, reply waiting to be posted (post_body set) */
	MSG_POSTING,   /* reply being posted (by this message or by a reply kept from before a restart) */
	MSG_DONE,      /* nothing more to do: the cursor may pass it */
};

struct message {
	struct message *next, *prev;
	char id[UUID_LEN + 1];
	char *source_id;        /* NULL: the canvas */
	char *context_id, *task_id;
	char *summary;          /* a short view of the text, for current_task */
	jv line;                /* the message object (before --filter); null once handed out for good */
	enum msg_state state;
	bool orphan;            /* a reply kept from before a restart: not in the list */
	bool unsaved;           /* ANSWERED/POSTING: its reply is not in the state file yet */
	int64_t not_before;     /* QUEUED: not handed out before (monotonic ms) */
	int64_t opened_at;
	int handouts;
	char *post_path;        /* ANSWERED/POSTING: where the reply goes */
	char *post_body;
};

struct inbox {
	char own_id[UUID_LEN + 1];
	struct message *head, *tail; /* platform order, from just after the cursor */
	struct message *orphans;     /* replies kept from a previous run, in reading order */
	int count;                   /* messages in the list */
	int n_open;                  /* handed out and not done */
	char cursor[UUID_LEN + 1];   /* last row of the done prefix ("" = none yet) */
	char fetch_cursor[UUID_LEN + 1]; /* last row fetched ("" = cold: replay by time) */
	jv done_ids;                 /* object: done above the cursor, not seen again yet */
	jv pending_ids;              /* object: ids whose kept reply is being posted */
	jv recent;                   /* object: ids done recently (de-duplicates a re-seed) */
	char (*recent_ring)[UUID_LEN + 1];
	int recent_pos;
	bool dirty;                  /* something the state file holds has changed */
	int unsaved_replies;         /* replies read, not posted, not in the state file yet */
};

/* st: the loaded state object (not consumed). */
void inbox_init(struct inbox *ib, const char *own_id, jv st);
void inbox_free(struct inbox *ib);

/* Adds rows (consumed; oldest first) fetched from the platform. Notify echoes,
 * rows already known and rows done before are recorded as done; bad rows are
 * reported and skipped. Returns how many messages were queued. */
int inbox_add_rows(struct inbox *ib, jv rows);
/* The platform answered "nothing newer": ids kept from the state file that did
 * not come back are forgotten (they are below the cursor, or were pruned). */
void inbox_caught_up(struct inbox *ib);
/* A 410: the cursor row is gone; replay by time from now on. */
void inbox_reseed(struct inbox *ib);

struct message *inbox_find(struct inbox *ib, const char *id);
struct message *inbox_oldest_open(struct inbox *ib);
/* The next message to hand out (QUEUED and due), or NULL. */
struct message *inbox_next_queued(struct inbox *ib, int64_t now);
/* Earliest not_before of a QUEUED message after now, or -1. */
int64_t inbox_next_due(struct inbox *ib, int64_t now);

void inbox_open(struct inbox *ib, struct message *m, int64_t now);
/* Takes path and body (allocated). */
void inbox_answer(struct inbox *ib, struct message *m, char *path, char *body);
void inbox_done(struct inbox *ib, struct message *m);
/* Hand it out again at not_before. */
void inbox_requeue(struct inbox *ib, struct message *m, int64_t not_before);
/* Every OPEN message goes back to QUEUED (the handler was restarted). */
int inbox_requeue_open(struct inbox *ib);
/* A kept reply was posted (or given up): its message is done. */
void inbox_orphan_done(struct inbox *ib, struct message *o);

/* Messages not done, including queued ones: what the fetch window counts. */
static inline int inbox_unfinished(const struct inbox *ib) { return ib->count; }

/* Writes last_since_id, done_ids and replies into st (consumed, returned). */
jv inbox_state(struct inbox *ib, jv st);

#endif
