/* dispatch.c: hand-out of messages to the handler, its reply lines read and acted on, and settled posts. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bridge.h"
#include "inbox.h"
#include "jqprog.h"
#include "json.h"
#include "log.h"
#include "outbox.h"
#include "parts.h"
#include "platform.h"
#include "reply.h"
#include "route.h"
#include "runlimit.h"
#include "util.h"

/* ---- set-up ----------------------------------------------------------- */

/* The program of option (NULL: none) into *out. false: reported. */
static bool compile(const char *option, const char *program, struct jqprog **out)
{
	char *err = NULL;
	if (!program)
		return true;
	*out = jqprog_compile(program, &err);
	if (*out)
		return true;
	log_error("%s: %s", option, err);
	free(err);
	return false;
}

bool dispatch_setup(struct bridge *b)
{
	struct dispatch *d = &b->dispatch;
	d->in_fd = -1;
	d->in_eof = true;
	d->out.fd = -1;
	linebuf_init(&d->lb, DISPATCH_LINE_MAX);
	return compile("--filter", b->s->filter, &d->filter) &&
	       compile("--reply-filter", b->s->reply_filter, &d->reply_filter);
}

void dispatch_open_stdio(struct bridge *b)
{
	struct dispatch *d = &b->dispatch;
	outchan_init(&d->out, STDOUT_FILENO);
	d->in_fd = STDIN_FILENO;
	/* An inherited stdin stays blocking (its flags are shared with our parent). */
	d->in_nonblock = (fcntl(STDIN_FILENO, F_GETFL) & O_NONBLOCK) != 0;
	d->in_eof = false;
	/* Closed at start-up: a clean stop, no message handed out. */
	if (b->s->stdout_closed)
		d->out.broken = true;
}

void dispatch_free(struct bridge *b)
{
	struct dispatch *d = &b->dispatch;
	if (d->bad_lines > DISPATCH_BAD_SHOWN)
		log_error("%ld bad reply lines in all, %ld of them not reported one by one%s", d->bad_lines,
			  d->bad_lines - DISPATCH_BAD_SHOWN, d->bad_unsaid ? "" : " (summed up above)");
	jqprog_free(d->filter);
	jqprog_free(d->reply_filter);
	d->filter = d->reply_filter = NULL;
	outchan_close(&d->out);
	linebuf_free(&d->lb);
}

/* ---- handing out ------------------------------------------------------ */

bool dispatch_ready(struct bridge *b)
{
	if (inbox_handed_count(b->ib) >= fetch_window(b))
		return false; /* the window: a replayed backlog is handed out bit by bit too */
	if (outbox_full(b->ob))
		return false; /* replies that cannot be posted wait outside the window, within a bound */
	switch (b->mode) {
	case MODE_FILTER:
		return !b->dispatch.out.broken;
	case MODE_COPROC:
		/* Under --per each conversation's readiness is the route's to judge. */
		return b->s->per_by != PER_NONE || coproc_ready(b);
	case MODE_EXEC:
		return exec_ready(b);
	}
	return false;
}

void dispatch_hand_out(struct bridge *b, int64_t now)
{
	struct dispatch *d = &b->dispatch;
	struct message *m;
	struct route r;
	route_begin(&r, now);
	while (b->phase == PH_RUN && dispatch_ready(b) && (m = route_next(b, &r))) {
		if (!runlimit_may_hand_out(b, m)) {
			/* --max-messages: no new message, but one handed out before goes
			 * again. Without conversations that is the first such one. */
			if (b->s->per_by != PER_NONE) {
				route_skip(b, &r, m);
				continue;
			}
			if (!(m = inbox_next_requeued(b->ib, now)))
				break;
		}
		jv outs;
		if (d->filter) {
			bool cut;
			outs = jqprog_run_capped(d->filter, jv_copy(m->line), DISPATCH_OUTPUTS_MAX, &cut);
			if (cut)
				log_error("--filter gave more than %d outputs for message %s: the first %d are handed out, the rest dropped",
					  DISPATCH_OUTPUTS_MAX, m->id, DISPATCH_OUTPUTS_MAX);
			if (!jv_is_valid(outs)) {
				jv msg = jv_invalid_get_msg(outs);
				char *why = xasprintf("--filter failed on message %s: %s", m->id,
						      jv_get_kind(msg) == JV_KIND_STRING ? jv_string_value(msg) : "error");
				log_error("%s (kept; tried again later)", why);
				session_outcome(b, true, why);
				free(why);
				jv_free(msg);
				int64_t delay = backoff_ms(m->handouts + 1, 1000, 60000);
				m->handouts++;
				inbox_requeue(b->ib, m, now + delay);
				route_skip(b, &r, m);
				continue;
			}
		} else {
			outs = jv_array_append(jv_array(), jv_copy(m->line));
		}
		if (jv_array_length(jv_copy(outs)) == 0) {
			/* The filter dropped it: handled, nothing to say. */
			log_debug("handed out: message %s: --filter gave nothing, so it is done", m->id);
			jv_free(outs);
			inbox_open(b->ib, m, now);
			inbox_done(b->ib, m);
			outbox_touch(b->ob);
			route_restart(&r);
			continue;
		}
		inbox_open(b->ib, m, now);
		switch (b->mode) {
		case MODE_EXEC:
			exec_start(b, m, jv_array_get(outs, 0));
			break;
		case MODE_COPROC:
			coproc_give(b, r.co, m, outs);
			break;
		case MODE_FILTER:
			log_debug("handed out: message %s to standard output", m->id);
			jv_array_foreach(outs, i, o)
				outchan_queue_json(&d->out, o);
			jv_free(outs);
			break;
		}
	}
	route_end(b, &r);
}

/* ---- replies ---------------------------------------------------------- */

/* One error line for each of the first DISPATCH_BAD_SHOWN bad lines, then a
 * count now and again: a handler printing junk must not flood stderr. */
static void reply_error(struct bridge *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void reply_error(struct bridge *b, const char *fmt, ...)
{
	struct dispatch *d = &b->dispatch;
	int64_t now = now_ms();
	d->bad_lines++;
	bool one_by_one = d->bad_lines <= DISPATCH_BAD_SHOWN;
	if (!one_by_one) {
		d->bad_unsaid++;
		if (now - d->bad_said_at < DISPATCH_BAD_SUMMARY_MS)
			return;
	}
	va_list ap;
	va_start(ap, fmt);
	char *msg = NULL;
	if (vasprintf(&msg, fmt, ap) < 0)
		msg = NULL;
	va_end(ap);
	if (one_by_one)
		log_error("reply line %ld: %s: skipped", d->line_no, msg ? msg : "invalid");
	else
		log_error("%ld more bad reply lines skipped (the last, line %ld: %s)", d->bad_unsaid, d->line_no,
			  msg ? msg : "invalid");
	free(msg);
	d->bad_said_at = now;
	d->bad_unsaid = 0;
}

/* The reply to m becomes a post: to the peer that sent it, or to the canvas. */
static void answer(struct bridge *b, struct message *m, jv parts)
{
	char *path, *body;
	/* The same id however often this message is answered: the platform keeps
	 * one, should a crash have made the handler answer it twice. */
	char reply_id[UUID_LEN + 1];
	platform_reply_id(b->s->workspace_id, m->id, 1, reply_id);
	char *in_reply_to = json_string_dup(m->line, "message_id");
	if (m->source_id) {
		path = xasprintf("/workspaces/%s/a2a", m->source_id);
		body = platform_a2a_body(parts, m->context_id, in_reply_to, reply_id);
	} else {
		path = xasprintf("/workspaces/%s/notify", b->s->workspace_id);
		body = platform_notify_body(parts);
	}
	if (strlen(body) > PLATFORM_POST_MAX) {
		free(body);
		char *why = xasprintf("reply to message %s is larger than the platform's 1 MiB limit", m->id);
		log_error("%s: sending an error reply instead", why);
		session_outcome(b, true, why);
		free(why);
		jv err = jv_array_append(jv_array(), parts_text_part("error: the reply was too large to deliver"));
		body = m->source_id ? platform_a2a_body(err, m->context_id, in_reply_to, reply_id) : platform_notify_body(err);
	}
	free(in_reply_to);
	inbox_answer(b->ib, m, path, body);
	outbox_touch(b->ob);
}

void dispatch_reply(struct bridge *b, jv v)
{
	struct reply r;
	char *err = NULL;
	if (reply_parse(v, &r, &err) != 0) {
		reply_error(b, "%s", err);
		free(err);
		return;
	}
	if (r.kind == REPLY_SEND) {
		char *why = NULL;
		struct message *o = outbox_new_message(b->ob, b->s->workspace_id, r.to, jv_copy(r.parts), r.context_id, &why);
		if (o)
			log_debug("line %ld: a new message %s to %s", b->dispatch.line_no, o->id, r.to ? r.to : "the canvas");
		else
			reply_error(b, "%s", why);
		free(why);
		reply_free(&r);
		return;
	}
	struct message *m;
	if (r.id) {
		m = inbox_find(b->ib, r.id);
		if (!m || m->state == MSG_DONE || m->state == MSG_QUEUED) {
			reply_error(b, "no message with id \"%.60s\" is waiting for a reply", r.id);
			reply_free(&r);
			return;
		}
		if (m->state != MSG_OPEN) {
			reply_error(b, "message %s is already answered", m->id);
			reply_free(&r);
			return;
		}
	} else {
		m = coproc_oldest_open(b);
		if (!m) {
			reply_error(b, "a reply without \"id\" but no message is waiting for one");
			reply_free(&r);
			return;
		}
	}
	int64_t now = now_ms();
	coproc_answered(b, m);
	log_debug("replied: line %ld answers message %s (%s)", b->dispatch.line_no, m->id, reply_kind_name(r.kind));
	switch (r.kind) {
	case REPLY_TEXT:
	case REPLY_PARTS:
		session_outcome(b, false, NULL);
		answer(b, m, jv_copy(r.parts));
		break;
	case REPLY_ACK:
		session_outcome(b, false, NULL);
		inbox_done(b->ib, m);
		outbox_touch(b->ob);
		break;
	case REPLY_ERROR: {
		char *why = xasprintf("handler failed on message %s: %.200s", m->id, r.error);
		session_outcome(b, true, why);
		log_warn("%s", why);
		free(why);
		char *text = xasprintf("error: %.*s", DISPATCH_ERROR_TEXT_MAX, r.error);
		jv parts = jv_array_append(jv_array(), parts_text_part(text));
		free(text);
		answer(b, m, parts);
		break;
	}
	case REPLY_RETRY:
		inbox_requeue(b->ib, m, now + (int64_t)(b->s->interval * 1000 > 1000 ? b->s->interval * 1000 : 1000));
		outbox_touch(b->ob);
		break;
	case REPLY_SEND: /* not a reply: handled above */
		break;
	}
	reply_free(&r);
}

static void on_line(void *ctx, const char *line, size_t len, bool too_long)
{
	struct bridge *b = ctx;
	struct dispatch *d = &b->dispatch;
	d->line_no++;
	if (too_long) {
		reply_error(b, "longer than %u bytes", DISPATCH_LINE_MAX);
		return;
	}
	if (memchr(line, '\0', len)) {
		/* libjq would take it inside a string; it is never meant. */
		reply_error(b, "contains a NUL byte");
		return;
	}
	size_t i = 0;
	while (i < len && (line[i] == ' ' || line[i] == '\t'))
		i++;
	if (i == len)
		return; /* blank lines are not replies */
	jv v = jv_parse_sized(line, (int)len);
	if (!jv_is_valid(v)) {
		char *why = json_error(v);
		reply_error(b, "not JSON (%s)", why);
		free(why);
		return;
	}
	if (d->reply_filter) {
		bool cut;
		jv outs = jqprog_run_capped(d->reply_filter, v, DISPATCH_OUTPUTS_MAX, &cut);
		if (cut)
			reply_error(b, "--reply-filter gave more than %d outputs: the rest are dropped", DISPATCH_OUTPUTS_MAX);
		if (!jv_is_valid(outs)) {
			jv msg = jv_invalid_get_msg(outs);
			reply_error(b, "--reply-filter failed: %s", jv_get_kind(msg) == JV_KIND_STRING ? jv_string_value(msg) : "error");
			jv_free(msg);
			return;
		}
		jv_array_foreach(outs, k, o)
			dispatch_reply(b, o);
		jv_free(outs);
		return;
	}
	dispatch_reply(b, v);
}

void dispatch_line(void *ctx, const char *line, size_t len, bool too_long)
{
	on_line(ctx, line, len, too_long);
}

static void read_input(struct bridge *b)
{
	struct dispatch *d = &b->dispatch;
	char chunk[65536];
	/* An inherited stdin stays blocking (its flags are shared with our parent),
	 * so it is read once per readiness; our own pipes are drained. */
	bool nonblock = d->in_nonblock;
	for (int rounds = 0; rounds < 16; rounds++) {
		ssize_t n = read(d->in_fd, chunk, sizeof chunk);
		if (n > 0) {
			linebuf_feed(&d->lb, chunk, (size_t)n, on_line, b);
			if (!nonblock || (size_t)n < sizeof chunk || d->in_fd < 0)
				return;
			continue;
		}
		if (n < 0 && (errno == EINTR))
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n < 0)
			log_error("reading replies: %s", strerror(errno));
		linebuf_finish(&d->lb, on_line, b);
		d->in_eof = true;
		bridge_drain(b, "end of input", true);
		return;
	}
}

/* ---- the outcome of a post -------------------------------------------- */

void dispatch_settled(void *ctx, const char *msg_id, bool ok, const char *why)
{
	struct bridge *b = ctx;
	if (ok)
		pace_activity(b); /* the conversation goes on: poll at --interval */
	if (!ok) {
		char *s = xasprintf("reply to %s not delivered: %s", msg_id, why ? why : "refused");
		session_outcome(b, true, s);
		free(s);
	}
}

/* ---- the channels ----------------------------------------------------- */

void dispatch_flush(struct bridge *b)
{
	struct dispatch *d = &b->dispatch;
	if (outchan_want_write(&d->out) && d->out.nonblock)
		outchan_flush(&d->out);
	if (b->mode == MODE_FILTER && d->out.broken && !b->posts_only) {
		log_info("output closed: stopping");
		bridge_drain(b, "output closed", true);
	}
}

void dispatch_watch(struct bridge *b, struct pollset *ps)
{
	struct dispatch *d = &b->dispatch;
	/* Replies are read once registered: a refused token is reported even
	 * when input ends at once. A full outbox is not added to: new messages
	 * ({"to"} lines) wait in the pipe until it drains. */
	d->in_slot = -1;
	if (!d->in_eof && d->in_fd >= 0 && b->phase != PH_REGISTER && !outbox_full(b->ob))
		d->in_slot = (int)pollset_add(ps, d->in_fd, CURL_WAIT_POLLIN);
	/* Stdout is watched even with nothing to write, so a reader that went
	 * away (| head -n 1) is noticed while its lines sit in the pipe. */
	d->out_watched = d->out.fd >= 0 && !d->out.broken &&
			 (outchan_want_write(&d->out) || (b->mode == MODE_FILTER && !b->posts_only));
	if (d->out_watched)
		pollset_add(ps, d->out.fd, outchan_want_write(&d->out) ? CURL_WAIT_POLLOUT : 0);
}

void dispatch_service(struct bridge *b, const struct pollset *ps)
{
	struct dispatch *d = &b->dispatch;
	/* curl_multi_poll reports only POLLIN/POLLOUT/POLLPRI for our
	 * descriptors, so hang-ups and errors are asked of poll(2) itself
	 * when it did not say "readable". */
	if (d->in_slot >= 0 && d->in_fd >= 0 &&
	    ((ps->fds[d->in_slot].revents & CURL_WAIT_POLLIN) || fd_events(d->in_fd, POLLIN)))
		read_input(b);
	if (d->out_watched && d->out.fd >= 0) {
		/* (libcurl may report an error as readable and writable.) */
		short ev = fd_events(d->out.fd, outchan_want_write(&d->out) ? POLLOUT : 0);
		if (ev & (POLLERR | POLLHUP | POLLNVAL))
			d->out.broken = true; /* the reader is gone */
		else if (ev & POLLOUT)
			outchan_flush(&d->out);
	}
}
