/* outbox.h: posting replies: in message order per peer, peers in parallel, retried until settled. */
#ifndef MC_OUTBOX_H
#define MC_OUTBOX_H

#include <stdbool.h>
#include "http.h"
#include "inbox.h"

struct outbox;
/* Called once a reply is settled: posted (ok) or refused for good (!ok, why set). */
typedef void (*posted_fn)(void *ctx, const char *msg_id, bool ok, const char *why);

struct outbox *outbox_new(struct inbox *ib, struct http *h, posted_fn fn, void *ctx);
void outbox_free(struct outbox *ob);
/* Starts every post whose turn has come. Cheap when nothing changed. */
void outbox_pump(struct outbox *ob);
/* Something in the inbox changed: the next pump looks again. */
void outbox_touch(struct outbox *ob);
/* Replies read and not yet posted (in flight, waiting to retry, or queued). */
int outbox_unposted(const struct outbox *ob);

#endif
