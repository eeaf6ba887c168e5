/* ack.c: acknowledging done rows to the platform after a save: one at a time, the latest value wins, off on a 404. */
#include <config.h>

#include <stdlib.h>
#include <string.h>

#include "ack.h"
#include "bridge.h"
#include "http.h"
#include "log.h"
#include "platform.h"
#include "util.h"

static void send_ack(struct bridge *b);

static void on_ack(void *ctx, const struct http_resp *r)
{
	struct bridge *b = ctx;
	struct acker *a = &b->ack;
	a->req = NULL;
	if (r->status >= 200 && r->status < 300) {
		if (a->sent > a->acked)
			a->acked = a->sent;
		log_debug("acknowledged activity up to seq %lld", (long long)a->acked);
		if (a->want > a->acked)
			send_ack(b);
		return;
	}
	if (r->status == 404) {
		/* An older platform without acks: nothing to say, nothing to retry. */
		log_debug("the platform has no activity acknowledgements (HTTP 404): not acknowledging");
		a->off = true;
		return;
	}
	char *why = platform_describe(r);
	log_debug("acknowledging seq %lld failed (%s): tried again at the next save", (long long)a->sent, why);
	free(why);
}

static void send_ack(struct bridge *b)
{
	struct acker *a = &b->ack;
	char *path = xasprintf("/workspaces/%s/activity/ack", b->s->workspace_id);
	char *body = xasprintf("{\"acked_seq\":%lld}", (long long)a->want);
	struct http_opts o = {
		.method = "POST", .path = path, .body = body, .body_len = strlen(body),
		.max_attempts = 1, .done = on_ack, .ctx = b,
	};
	a->sent = a->want;
	a->req = http_start(b->h, &o);
	free(body);
	free(path);
}

void ack_saved(struct bridge *b, int64_t seq)
{
	struct acker *a = &b->ack;
	if (seq > a->want)
		a->want = seq;
	if (!a->off && !a->req && a->want > a->acked)
		send_ack(b);
}

bool ack_busy(const struct bridge *b)
{
	return b->ack.req != NULL;
}
