/* coproc.c: co-processes, one or one per conversation: start, feed, read, restart with backoff, close in steps. */
#include <config.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bridge.h"
#include "child.h"
#include "inbox.h"
#include "log.h"
#include "util.h"

#define STABLE_CHILD_MS 10000           /* a co-process that lived this long was not failing */

/* One co-process and, under --per, the conversation it serves. */
struct coproc {
	struct coproc *next;
	struct conv_id cid;      /* under --per: its conversation (cid.id owned) */
	char *key;               /* under --per: the conversation's key; NULL without */
	char **env;              /* what it gets on top of the bridge's environment */
	struct child p;          /* p.pid 0: not running */
	struct outchan out;      /* message lines to its stdin */
	struct linebuf lb;       /* reply lines from its stdout */
	int in_slot, out_slot, err_slot; /* this turn's pollset slots, -1: not watched */
	char (*held)[UUID_LEN + 1]; /* ids handed to it, oldest first, until answered */
	int n_held, cap_held;
	int64_t held_since;      /* when the oldest held message became the oldest */
	bool dirty;              /* a held message was answered: drop it from held */
	int64_t last_used;       /* last message handed out or answered */
	int64_t restart_at;      /* 0: no restart pending */
	int failures;            /* deaths in a row without an answer */
	bool answered;           /* this run of it answered something */
	bool closing;            /* told to finish (idle, a slot, the end): its exit is no failure */
	bool timed_out;          /* stopped for --reply-timeout: restarted at once */
};

static bool per(const struct bridge *b)
{
	return b->s->per_by != PER_NONE;
}

static const char *command_name(const struct bridge *b)
{
	return b->s->command[0];
}

/* ---- the list ---------------------------------------------------------- */

static struct coproc *co_new(struct bridge *b, const struct conv_id *c, const struct message *m)
{
	struct coproc *co = xcalloc(1, sizeof *co);
	co->p.to_fd = co->p.from_fd = co->p.err_fd = -1;
	co->out.fd = -1;
	co->in_slot = co->out_slot = co->err_slot = -1;
	if (c) {
		co->cid.kind = c->kind;
		co->cid.id = c->id ? xstrdup(c->id) : NULL;
		co->key = conv_key(b->s->workspace_id, c);
		co->env = conv_env(b->s->workspace_id, co->key, m ? m->source_id : NULL,
				   c->kind == CONV_CONTEXT ? c->id : NULL);
	} else {
		co->env = xcalloc(2, sizeof *co->env);
		co->env[0] = xasprintf("MOLECULE_WORKSPACE_ID=%s", b->s->workspace_id);
	}
	co->next = b->co.list;
	b->co.list = co;
	b->co.tracked++;
	return co;
}

static void co_free(struct bridge *b, struct coproc *co)
{
	for (struct coproc **pp = &b->co.list; *pp; pp = &(*pp)->next)
		if (*pp == co) {
			*pp = co->next;
			break;
		}
	b->co.tracked--;
	if (b->co.feeding == co)
		b->co.feeding = NULL;
	outchan_close(&co->out);
	child_release(&co->p);
	linebuf_free(&co->lb);
	free((char *)co->cid.id);
	free(co->key);
	conv_env_free(co->env);
	free(co->held);
	free(co);
}

struct coproc *coproc_find(struct bridge *b, const struct conv_id *c)
{
	for (struct coproc *co = b->co.list; co; co = co->next)
		if (conv_same(&co->cid, c))
			return co;
	return NULL;
}

/* ---- starting ----------------------------------------------------------- */

/* Starts co's process. false: it could not, and a restart is scheduled or
 * the bridge stopped (both reported). */
static bool start(struct bridge *b, struct coproc *co, int64_t now)
{
	char *err = NULL;
	int rc = child_start(&co->p, b->s->command, co->env, true, b->s->log_json, &err);
	if (rc != 0) {
		int cannot = child_cannot_run(rc);
		co->p.pid = 0;
		if (cannot) {
			log_error("%s", err);
			bridge_stop(b, cannot, "the handler cannot be run");
		} else if (++co->failures > b->s->restart_limit) {
			log_error("%s: giving up", err);
			bridge_stop(b, MC_EXIT_ERROR, "the handler cannot be started");
		} else {
			int64_t delay = backoff_ms(co->failures, 200, 10000);
			log_warn("%s; trying again in %lld ms", err, (long long)delay);
			co->restart_at = now + delay;
		}
		free(err);
		return false;
	}
	outchan_init(&co->out, co->p.to_fd);
	linebuf_init(&co->lb, DISPATCH_LINE_MAX);
	co->answered = co->closing = co->timed_out = false;
	co->restart_at = 0;
	co->last_used = now;
	b->co.alive++;
	log_debug("started handler %s%s%s (pid %d)", command_name(b), co->key ? " for " : "", co->key ? co->key : "",
		  (int)co->p.pid);
	return true;
}

bool coproc_setup(struct bridge *b)
{
	if (per(b))
		return true;
	struct coproc *co = co_new(b, NULL, NULL);
	return start(b, co, now_ms()) || b->phase != PH_END;
}

bool coproc_slot_free(const struct bridge *b)
{
	return b->co.alive < b->s->max_procs;
}

struct coproc *coproc_open(struct bridge *b, const struct conv_id *c, const struct message *m)
{
	struct coproc *co = coproc_find(b, c);
	if (!co)
		co = co_new(b, c, m);
	return start(b, co, now_ms()) ? co : NULL;
}

/* ---- handing out -------------------------------------------------------- */

bool coproc_takes(const struct coproc *co)
{
	return co->p.pid > 0 && !co->p.exited && co->p.to_fd >= 0 && !co->out.broken && !co->closing;
}

bool coproc_ready(const struct bridge *b)
{
	return b->co.list && coproc_takes(b->co.list);
}

bool coproc_running(const struct bridge *b)
{
	return b->mode == MODE_COPROC && b->co.alive > 0;
}

/* Its input is gone (it stopped reading, or exited): it takes nothing more and
 * gets the stop sequence; what it holds goes to its restart. */
static void input_broken(struct bridge *b, struct coproc *co, int64_t now)
{
	outchan_close(&co->out);
	co->out.broken = true;
	child_stop(&co->p, now, (int64_t)(b->s->drain_timeout * 1000));
}

void coproc_give(struct bridge *b, struct coproc *co, struct message *m, jv outs)
{
	int64_t now = now_ms();
	log_debug("handed out: message %s to handler %s%s%s (pid %d)", m->id, command_name(b), co->key ? " for " : "",
		  co->key ? co->key : "", (int)co->p.pid);
	jv_array_foreach(outs, i, o)
		outchan_queue_json(&co->out, o);
	jv_free(outs);
	if (co->n_held == co->cap_held) {
		co->cap_held = co->cap_held ? 2 * co->cap_held : 4;
		co->held = xrealloc(co->held, (size_t)co->cap_held * sizeof *co->held);
	}
	memcpy(co->held[co->n_held++], m->id, UUID_LEN + 1);
	if (co->n_held == 1)
		co->held_since = now;
	co->last_used = now;
	outchan_flush(&co->out);
	if (co->out.broken)
		input_broken(b, co, now);
}

/* Drops the answered messages at the front of held: the first one left is
 * open, the one its handler works on. */
static void prune(struct bridge *b, struct coproc *co, int64_t now)
{
	int k = 0;
	while (k < co->n_held) {
		struct message *m = inbox_find(b->ib, co->held[k]);
		if (m && m->state == MSG_OPEN)
			break;
		k++;
	}
	if (k > 0) {
		memmove(co->held, co->held + k, (size_t)(co->n_held - k) * sizeof *co->held);
		co->n_held -= k;
		co->held_since = now;
	}
	co->dirty = false;
}

struct message *coproc_oldest_open(struct bridge *b)
{
	struct coproc *co = b->co.feeding;
	if (!co || !co->key)
		return inbox_oldest_open(b->ib);
	prune(b, co, now_ms());
	return co->n_held ? inbox_find(b->ib, co->held[0]) : NULL;
}

void coproc_answered(struct bridge *b, const struct message *m)
{
	if (b->mode != MODE_COPROC || b->co.timing_out)
		return;
	int64_t now = now_ms();
	struct coproc *from = b->co.feeding ? b->co.feeding : b->co.list;
	if (from) {
		from->failures = 0;
		from->answered = true;
		from->last_used = now;
	}
	struct conv_id c = conv_of(b->s->per_by, m);
	struct coproc *holder = per(b) ? coproc_find(b, &c) : b->co.list;
	if (holder) {
		holder->dirty = true;
		holder->last_used = now;
	}
}

/* ---- reading ------------------------------------------------------------ */

/* Reply lines from co's stdout; at its end, co cannot answer any more. */
static void read_output(struct bridge *b, struct coproc *co, bool to_the_end)
{
	char chunk[65536];
	b->co.feeding = co;
	for (int rounds = 0; co->p.from_fd >= 0 && (to_the_end || rounds < 16); rounds++) {
		ssize_t n = read(co->p.from_fd, chunk, sizeof chunk);
		if (n > 0) {
			linebuf_feed(&co->lb, chunk, (size_t)n, dispatch_line, b);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		if (n < 0)
			log_error("reading replies of handler %s: %s", command_name(b), strerror(errno));
		linebuf_finish(&co->lb, dispatch_line, b);
		child_close_stdout(&co->p);
		/* It cannot answer any more: its exit hands what it holds on. */
		if (!co->p.exited)
			input_broken(b, co, now_ms());
	}
	b->co.feeding = NULL;
}

void coproc_watch(struct bridge *b, struct pollset *ps)
{
	for (struct coproc *co = b->co.list; co; co = co->next) {
		co->in_slot = co->out_slot = co->err_slot = -1;
		if (co->p.pid <= 0)
			continue;
		/* Replies are read once registered, as in the other modes. */
		if (co->p.from_fd >= 0 && b->phase != PH_REGISTER)
			co->in_slot = (int)pollset_add(ps, co->p.from_fd, CURL_WAIT_POLLIN);
		if (co->p.to_fd >= 0 && outchan_want_write(&co->out))
			co->out_slot = (int)pollset_add(ps, co->p.to_fd, CURL_WAIT_POLLOUT);
		if (co->p.err_fd >= 0)
			co->err_slot = (int)pollset_add(ps, co->p.err_fd, CURL_WAIT_POLLIN);
	}
}

void coproc_service(struct bridge *b, const struct pollset *ps)
{
	int64_t now = now_ms();
	for (struct coproc *co = b->co.list; co; co = co->next) {
		if (co->in_slot >= 0 && co->p.from_fd >= 0 && ps->fds[co->in_slot].revents)
			read_output(b, co, false);
		if (co->out_slot >= 0 && co->p.to_fd >= 0 && ps->fds[co->out_slot].revents) {
			outchan_flush(&co->out);
			if (co->out.broken)
				input_broken(b, co, now);
		}
		if (co->err_slot >= 0 && co->p.err_fd >= 0 && ps->fds[co->err_slot].revents)
			child_read_stderr(&co->p, command_name(b), co->key);
	}
}

/* ---- exits and restarts ------------------------------------------------- */

/* What it held and nobody answered goes back to the queue, in order. */
static int requeue_held(struct bridge *b, struct coproc *co)
{
	int n = 0;
	for (int i = 0; i < co->n_held; i++) {
		struct message *m = inbox_find(b->ib, co->held[i]);
		if (m && m->state == MSG_OPEN) {
			inbox_requeue(b->ib, m, 0);
			n++;
		}
	}
	co->n_held = 0;
	return n;
}

/* co's process is gone: what it printed still counts, what it held goes to
 * the next one. Returns false when co is to be forgotten. */
static bool exited(struct bridge *b, struct coproc *co, int status)
{
	int64_t now = now_ms();
	co->p.exited = true;
	co->p.status = status;
	b->co.alive--;
	read_output(b, co, true);
	child_read_stderr(&co->p, command_name(b), co->key);
	child_linger(&co->p, now, (int64_t)(b->s->drain_timeout * 1000));
	outchan_close(&co->out);
	child_release(&co->p);
	linebuf_free(&co->lb);
	bool quick = now - co->p.started_at < STABLE_CHILD_MS;
	co->p.pid = 0;
	int requeued = requeue_held(b, co);
	char *how = child_describe(status);
	bool keep = true;
	int cannot = child_status_cannot_run(status);
	if (b->phase != PH_RUN && b->phase != PH_REGISTER) {
		/* Stopping: it was told to finish. */
		if (status != 0 || requeued)
			log_info("handler %s%s%s ended (%s)", command_name(b), co->key ? " for " : "", co->key ? co->key : "",
				 how);
		if (!coproc_running(b))
			b->posts_only = true;
		keep = false;
	} else if (cannot && !co->answered) {
		/* Not a crash but a handler that cannot run at all: nothing it was
		 * given is answered, and nothing is tried again. */
		log_error("handler %s cannot be run (%s); the %d messages it was given are kept for the next run",
			  command_name(b), how, requeued);
		bridge_stop(b, cannot, "the handler cannot be run");
	} else if (co->timed_out) {
		co->restart_at = now;
		keep = requeued > 0 || !per(b);
	} else if (per(b) && requeued == 0) {
		/* Closed, or ended with nothing to do: its next message starts it again. */
		if (!co->closing)
			log_info("handler %s for %s ended (%s)", command_name(b), co->key, how);
		keep = false;
	} else {
		co->failures = quick ? co->failures + 1 : 1;
		if (co->failures > b->s->restart_limit) {
			log_error("handler %s%s%s keeps failing (%s, %d times in a row): giving up", command_name(b),
				  co->key ? " for " : "", co->key ? co->key : "", how, co->failures);
			bridge_stop(b, WIFEXITED(status) && WEXITSTATUS(status) ? WEXITSTATUS(status) : MC_EXIT_ERROR,
				    "the handler keeps failing");
		} else {
			int64_t delay = backoff_ms(co->failures, 200, 10000);
			log_warn("handler %s%s%s ended (%s); %d unanswered messages go to its restart in %lld ms",
				 command_name(b), co->key ? " for " : "", co->key ? co->key : "", how, requeued,
				 (long long)delay);
			co->restart_at = now + delay;
		}
	}
	free(how);
	return keep;
}

bool coproc_reaped(struct bridge *b, pid_t pid, int status)
{
	if (b->mode != MODE_COPROC)
		return false;
	for (struct coproc *co = b->co.list; co; co = co->next)
		if (co->p.pid == pid && !co->p.exited) {
			if (!exited(b, co, status) && b->phase != PH_END)
				co_free(b, co);
			return true;
		}
	return false;
}

/* ---- closing ------------------------------------------------------------ */

/* Told to finish: end of input, then the stop sequence. */
static void close_one(struct bridge *b, struct coproc *co, int64_t now, const char *why)
{
	log_debug("closing handler %s for %s (%s)", command_name(b), co->key ? co->key : "all messages", why);
	co->closing = true;
	outchan_close(&co->out);
	child_stop(&co->p, now, (int64_t)(b->s->drain_timeout * 1000));
}

void coproc_want_slots(struct bridge *b, int n)
{
	int64_t now = now_ms();
	n += b->co.restarts_waiting;
	int closing = 0;
	for (struct coproc *co = b->co.list; co; co = co->next)
		closing += co->p.pid > 0 && co->closing;
	while (closing < n) {
		struct coproc *lru = NULL;
		for (struct coproc *co = b->co.list; co; co = co->next)
			if (coproc_takes(co) && co->n_held == 0 && !outchan_want_write(&co->out) &&
			    (!lru || co->last_used < lru->last_used))
				lru = co;
		if (!lru)
			return;
		close_one(b, lru, now, "its slot is wanted");
		closing++;
	}
}

/* It held its oldest message longer than --reply-timeout: that one gets an
 * error reply, and the conversation a fresh co-process. */
static void time_out(struct bridge *b, struct coproc *co, int64_t now)
{
	struct message *m = inbox_find(b->ib, co->held[0]);
	if (!m || m->state != MSG_OPEN)
		return;
	log_warn("handler %s%s%s held message %s for more than %g s: stopping it", command_name(b),
		 co->key ? " for " : "", co->key ? co->key : "", m->id, b->s->reply_timeout);
	jv v = jv_object_set(jv_object(), jv_string("id"), jv_string(m->id));
	v = jv_object_set(v, jv_string("error"), jv_string_fmt("timed out after %g s", b->s->reply_timeout));
	b->co.timing_out = true;
	dispatch_reply(b, v);
	b->co.timing_out = false;
	co->timed_out = true;
	co->closing = true;
	outchan_close(&co->out);
	child_stop(&co->p, now, 0);
}

void coproc_tick(struct bridge *b, int64_t now)
{
	if (b->mode != MODE_COPROC)
		return;
	bool running = b->phase == PH_RUN || b->phase == PH_REGISTER;
	int64_t idle_ms = (int64_t)(b->s->idle_exit * 1000);
	int64_t timeout_ms = (int64_t)(b->s->reply_timeout * 1000);
	b->co.restarts_waiting = 0;
	for (struct coproc *co = b->co.list, *next; co; co = next) {
		next = co->next;
		if (co->p.pid > 0) {
			if (co->dirty)
				prune(b, co, now);
			if (timeout_ms > 0 && co->n_held > 0 && !co->timed_out && b->phase != PH_END &&
			    now - co->held_since >= timeout_ms)
				time_out(b, co, now);
			if (per(b) && b->phase == PH_RUN && idle_ms > 0 && coproc_takes(co) && co->n_held == 0 &&
			    !outchan_want_write(&co->out) && now - co->last_used >= idle_ms)
				close_one(b, co, now, "idle");
			/* Draining: once its last message is written, end of input tells it to finish. */
			if (b->phase == PH_DRAIN && co->p.to_fd >= 0 && !outchan_want_write(&co->out)) {
				outchan_close(&co->out);
				child_close_stdin(&co->p);
			}
			child_stop_tick(&co->p, now);
		} else if (co->restart_at && running) {
			if (now < co->restart_at)
				continue;
			if (per(b) && !coproc_slot_free(b))
				b->co.restarts_waiting++;
			else
				start(b, co, now);
		} else if (per(b) && !co->restart_at && b->phase != PH_END) {
			co_free(b, co);
		}
	}
}

int64_t coproc_next_wakeup(const struct bridge *b, int64_t now)
{
	int64_t wait = -1;
	if (b->mode != MODE_COPROC)
		return -1;
	for (const struct coproc *co = b->co.list; co; co = co->next) {
		if (co->p.pid > 0) {
			wait = wait_min(wait, child_stop_next(&co->p, now));
			if (b->s->reply_timeout > 0 && co->n_held > 0 && !co->timed_out) {
				int64_t at = co->held_since + (int64_t)(b->s->reply_timeout * 1000);
				wait = wait_min(wait, at > now ? at - now : 0);
			}
			if (per(b) && b->s->idle_exit > 0 && co->n_held == 0 && coproc_takes(co)) {
				int64_t at = co->last_used + (int64_t)(b->s->idle_exit * 1000);
				wait = wait_min(wait, at > now ? at - now : 0);
			}
		} else if (co->restart_at && b->phase != PH_DRAIN && b->phase != PH_END) {
			wait = wait_min(wait, co->restart_at > now ? co->restart_at - now : 0);
		}
	}
	return wait;
}

/* ---- the end ------------------------------------------------------------ */

void coproc_stop(struct bridge *b, int64_t now, int64_t wait_ms)
{
	for (struct coproc *co = b->co.list; co; co = co->next)
		if (co->p.pid > 0) {
			co->closing = true;
			outchan_close(&co->out);
			child_stop(&co->p, now, wait_ms);
		}
}

void coproc_free(struct bridge *b)
{
	while (b->co.list) {
		struct coproc *co = b->co.list;
		if (co->p.pid > 0 && !co->p.exited) {
			log_warn("handler %s (pid %d) did not end: killed", command_name(b), (int)co->p.pid);
			child_signal(&co->p, SIGKILL);
		}
		co_free(b, co);
	}
	b->co.alive = 0;
}
