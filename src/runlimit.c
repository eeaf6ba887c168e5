/* runlimit.c: the bounds of a run: --once and --max-messages, the --once deadline, and the stop once the work is done. */
#include <config.h>

#include "runlimit.h"
#include "ack.h"
#include "bridge.h"
#include "inbox.h"
#include "log.h"
#include "outbox.h"
#include "util.h"

/* How long a finished run waits for its last acknowledgement to be answered. */
#define FINAL_ACK_WAIT_MS 2000

static int64_t deadline(const struct bridge *b)
{
	return b->started + (int64_t)(b->s->drain_timeout * 1000);
}

bool runlimit_fetch_wanted(struct bridge *b)
{
	if (b->s->once && b->fetch.caught_up)
		return false;
	return !b->s->max_messages || inbox_done_count(b->ib) + inbox_unfinished(b->ib) < b->s->max_messages;
}

bool runlimit_may_hand_out(struct bridge *b, const struct message *m)
{
	return !b->s->max_messages || m->handouts > 0 ||
	       inbox_done_count(b->ib) + inbox_in_play(b->ib) < b->s->max_messages;
}

/* Everything --once found is done, or --max-messages messages are; kept
 * replies are posted either way. */
static bool complete(struct bridge *b)
{
	if (outbox_unposted(b->ob) > 0)
		return false;
	if (b->s->once && fetch_caught_up(b) && inbox_unfinished(b->ib) == 0)
		return true;
	return b->s->max_messages && inbox_done_count(b->ib) >= b->s->max_messages && inbox_open_count(b->ib) == 0;
}

static void time_up(struct bridge *b)
{
	if (!b->fetch.polled_once) {
		log_error("--once: the platform at %s did not answer within --drain-timeout (%g s): nothing handed out",
			  b->s->api_url, b->s->drain_timeout);
		bridge_stop(b, MC_EXIT_ERROR, "platform unreachable");
		return;
	}
	if (!complete(b)) {
		int n = inbox_unanswered(b->ib), r = outbox_unposted(b->ob);
		log_warn("--once: --drain-timeout (%g s) is up: %d message%s unanswered, %d repl%s not posted; "
			 "kept for the next run", b->s->drain_timeout, n, n == 1 ? "" : "s", r, r == 1 ? "y" : "ies");
	}
	bridge_stop(b, MC_EXIT_OK, "--once time is up");
}

void runlimit_tick(struct bridge *b, int64_t now)
{
	if (b->phase == PH_END)
		return;
	if (b->s->once && now >= deadline(b)) {
		time_up(b);
		return;
	}
	if (b->phase != PH_RUN || !complete(b))
		return;
	/* Saved now rather than at exit, so that the acknowledgement it makes
	 * reaches the platform before the run ends. */
	if (!b->runlimit.final_save) {
		b->runlimit.final_save = now;
		save_now(b);
	}
	if (!ack_busy(b) || now >= b->runlimit.final_save + FINAL_ACK_WAIT_MS)
		bridge_stop(b, MC_EXIT_OK, "work complete");
}

/* Milliseconds from now to at, never negative (a negative wait means none). */
static int64_t until(int64_t at, int64_t now)
{
	return at > now ? at - now : 0;
}

int64_t runlimit_next_wakeup(const struct bridge *b, int64_t now)
{
	int64_t wait = b->s->once ? until(deadline(b), now) : -1;
	if (b->runlimit.final_save)
		wait = wait_min(wait, until(b->runlimit.final_save + FINAL_ACK_WAIT_MS, now));
	return wait;
}
