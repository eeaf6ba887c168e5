/* outbox.h: posting replies and new messages: in order per destination, destinations in parallel, retried until settled, bounded. */
#ifndef MC_OUTBOX_H
#define MC_OUTBOX_H

#include <stdbool.h>
#include <stdint.h>
#include "http.h"
#include "inbox.h"

/* What may wait in the outbox (answered and not posted, or done behind one that
 * is not), beyond the handler's window: one peer that cannot be reached must not
 * stop the others, and memory must stay bounded while it lasts. */
#define OUTBOX_MAX_MESSAGES 1024
#define OUTBOX_MAX_BYTES (32L << 20)
#define OUTBOX_STALL_WARN_MS 60000   /* a destination that cannot be reached: warn this often */
#define OUTBOX_PROMPT_MS 1000        /* a post in flight this long, or retried, is no longer prompt */

struct outbox;
/* Called once a post is settled: delivered (ok), or refused for good (!ok, why
 * set). msg_id: the message answered, or a new message's messageId. */
typedef void (*posted_fn)(void *ctx, const char *msg_id, bool ok, const char *why);

struct outbox *outbox_new(struct inbox *ib, struct http *h, posted_fn fn, void *ctx);
void outbox_free(struct outbox *ob);
/* post_timeout_ms: how long one attempt may take (a push-mode peer can hold
 * it for minutes; 0: the client's default). stall_warn_ms: how often a
 * destination whose posts keep failing is reported. */
void outbox_set_timing(struct outbox *ob, long post_timeout_ms, int64_t stall_warn_ms);
/* A new message ({"to":...} line) to post: to the peer `to`, or to the canvas
 * (to NULL), with a fresh messageId kept across retries and restarts, after the
 * replies to the same place read before it. parts consumed. NULL and *err set
 * (one line, caller frees) when it cannot be sent: to is own_id, or it is too
 * large. */
struct message *outbox_new_message(struct outbox *ob, const char *own_id, const char *to, jv parts,
				   const char *context_id, char **err);
/* Starts every post whose turn has come; reports destinations that cannot be
 * reached. Cheap when nothing changed; false then. */
bool outbox_pump(struct outbox *ob);
/* Something in the inbox changed: the next pump looks again. */
void outbox_touch(struct outbox *ob);
/* Posts that can go in this run and are not settled (in flight, waiting to
 * retry, or waiting their turn). A kept reply still waiting to learn where its
 * message sits is not counted: it stays kept for the next run. */
int outbox_unposted(const struct outbox *ob);
/* The outbox holds as much as it may (OUTBOX_MAX_MESSAGES or _BYTES), as of the
 * last pump: hand out nothing more until it drains. */
bool outbox_full(const struct outbox *ob);
/* Of what waits (as of the last pump), the replies and new messages whose
 * destination is served promptly: no post of it in flight for OUTBOX_PROMPT_MS
 * or retried. These are only queued behind a post about to finish, and count
 * in the fetch window like messages not answered yet, so that a handler faster
 * than the platform does not pile up replies; those to a slow or failing
 * destination do not, so it starves nobody. *recheck_at: when the count may
 * drop as a post stops being prompt (0: none in flight). */
int outbox_prompt_waiting(struct outbox *ob, int64_t now, int64_t *recheck_at);

#endif
