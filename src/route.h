/* route.h: which queued message goes to the handler next: platform order, and under --per, each conversation in turn. */
#ifndef MC_ROUTE_H
#define MC_ROUTE_H

#include <stdbool.h>
#include <stdint.h>

#include "conversation.h"

struct bridge;
struct message;
struct coproc;

/* One hand-out pass. Under --per it walks the queue once: a conversation whose
 * earlier message waits (not due yet, its handler busy or restarting, no slot
 * for it) holds back its later ones, never the other conversations'. */
struct route {
	int64_t now;
	struct message *cursor;   /* where the walk goes on */
	bool walking, walked;
	struct conv_id *blocked;  /* conversations held back in this pass */
	int n_blocked, cap_blocked;
	int waiting;              /* new conversations held back for want of a slot */
	struct coproc *co;        /* the co-process route_next chose */
};

void route_begin(struct route *r, int64_t now);
/* The next message to hand out, or NULL. The caller has checked that the window
 * has room (dispatch_ready). In co-process mode r->co is the one to give it to
 * (started for it if its conversation had none). */
struct message *route_next(struct bridge *b, struct route *r);
/* Milliseconds until a queued message may be handed out that could not be
 * now, or -1 (the loop's timer while the handler can take messages). */
int64_t route_next_due(struct bridge *b, int64_t now);
/* The message route_next returned was not handed out: its conversation waits. */
void route_skip(struct bridge *b, struct route *r, struct message *m);
/* The queue changed under the walk (a message was done at once): start over. */
void route_restart(struct route *r);
/* The end of the pass: idle co-processes make room for what waits for a slot. */
void route_end(struct bridge *b, struct route *r);

#endif
