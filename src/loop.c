/* loop.c: the event loop: set-up, one turn at a time over libcurl's multi interface, signals, drain and stop. */
#include <config.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "loop.h"
#include "bridge.h"
#include "child.h"
#include "http.h"
#include "inbox.h"
#include "log.h"
#include "outbox.h"
#include "report.h"
#include "route.h"
#include "runlimit.h"
#include "state.h"
#include "uploads.h"
#include "util.h"

#define IDLE_WAIT_MS 60000              /* the longest sleep when no timer is nearer */

/* ---- stopping --------------------------------------------------------- */

void bridge_stop(struct bridge *b, int status, const char *why)
{
	if (b->phase == PH_END)
		return;
	log_debug("stopping: %s", why);
	b->phase = PH_END;
	b->exit_status = status;
}

void bridge_drain(struct bridge *b, const char *why, bool posts_only)
{
	if (posts_only)
		b->posts_only = true;
	if (b->phase == PH_DRAIN || b->phase == PH_END)
		return;
	if (b->phase == PH_REGISTER) {
		bridge_stop(b, MC_EXIT_OK, why);
		return;
	}
	log_debug("stopping: %s", why);
	b->phase = PH_DRAIN;
	fetch_cancel(b);
	events_stop(b);
	b->drain_deadline = now_ms() + (int64_t)(b->s->drain_timeout * 1000);
}

/* Draining is over once every reply is posted and, unless no handler will
 * answer any more, every open message is done. */
static bool drained(struct bridge *b)
{
	if (outbox_unposted(b->ob) > 0)
		return false;
	/* The co-process got end of input: let it finish on its own. */
	if (coproc_running(b))
		return false;
	if (b->posts_only)
		return true;
	return inbox_open_count(b->ib) == 0;
}

/* ---- signals ---------------------------------------------------------- */

/* Each child goes to the module that started it. */
static void reap_children(struct bridge *b)
{
	int status;
	pid_t pid;
	while ((pid = child_reap(&status)) > 0)
		if (!coproc_reaped(b, pid, status))
			exec_reaped(b, pid, status);
}

static void handle_signals(struct bridge *b)
{
	struct signalfd_siginfo si;
	while (read(b->sig_fd, &si, sizeof si) == (ssize_t)sizeof si) {
		if (si.ssi_signo == SIGCHLD) {
			reap_children(b);
			continue;
		}
		if (si.ssi_signo == SIGINT || si.ssi_signo == SIGTERM || si.ssi_signo == SIGHUP) {
			b->signals++;
			if (b->phase == PH_END) {
				/* Already stopping: the handlers' grace is over. */
				int64_t now = now_ms();
				coproc_stop(b, now, 0);
				exec_stop(b, now, 0);
				child_linger_hurry(now, 0);
			} else if (b->signals > 1) {
				log_warn("second signal: stopping without waiting for replies");
				bridge_stop(b, MC_EXIT_OK, "second signal");
			} else {
				log_info("%s: finishing open work (up to %.0f s)", strsignal((int)si.ssi_signo), b->s->drain_timeout);
				bridge_drain(b, "signal", false);
			}
		}
	}
}

/* ---- set-up and teardown ---------------------------------------------- */

static void setup(struct bridge *b, struct settings *s)
{
	memset(b, 0, sizeof *b);
	b->s = s;
	b->lock_fd = -1;
	b->sig_fd = -1;
	b->st = jv_null();
	char *err = NULL;
	b->lock_fd = state_lock(s->state_dir, s->workspace_id, &err);
	if (b->lock_fd < 0) {
		log_error("%s", err);
		free(err);
		bridge_stop(b, MC_EXIT_ERROR, "state locked");
		return;
	}
	if (state_load(s->state_dir, s->workspace_id, &b->st, &err) < 0) {
		log_error("%s", err);
		free(err);
		bridge_stop(b, MC_EXIT_ERROR, "state unusable");
		return;
	}
	session_token_from_state(b);
	if (!dispatch_setup(b)) {
		bridge_stop(b, MC_EXIT_USAGE, "a jq program does not compile");
		return;
	}
	b->ib = inbox_new(s->workspace_id, b->st);
	b->h = http_new(s->api_url, s->workspace_id, s->org_id);
	http_set_token(b->h, s->token);
	b->ob = outbox_new(b->ib, b->h, dispatch_settled, b);
	child_setup();
	session_attach(b);
	b->mode = s->command ? MODE_COPROC : s->exec ? MODE_EXEC : MODE_FILTER;
	if (b->mode == MODE_FILTER)
		dispatch_open_stdio(b);

	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGHUP);
	sigaddset(&mask, SIGCHLD);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	b->sig_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (b->sig_fd < 0) {
		log_error("signalfd: %s", strerror(errno));
		bridge_stop(b, MC_EXIT_ERROR, "no signalfd");
		return;
	}
	b->started = now_ms();
	srand((unsigned)(time(NULL) ^ getpid()));
	pace_init(b);
	events_init(b);
	if (b->mode == MODE_COPROC)
		coproc_setup(b);
}

static void teardown(struct bridge *b)
{
	coproc_free(b);
	exec_free(b);
	child_linger_end();
	if (b->h)
		save_now(b);
	report_summary(b);
	uploads_stop(b);
	outbox_free(b->ob);
	events_free(b);
	http_free(b->h);
	inbox_free(b->ib);
	dispatch_free(b);
	jv_free(b->st);
	session_free(b);
	if (b->sig_fd >= 0)
		close(b->sig_fd);
	if (b->lock_fd >= 0)
		close(b->lock_fd);
}

/* ---- one turn --------------------------------------------------------- */

/* Timers and the work they start, then posts, output and requests. */
static void run_timers(struct bridge *b, int64_t now)
{
	coproc_tick(b, now);
	exec_tick(b, now);
	child_linger_tick(now);
	runlimit_tick(b, now);
	if (b->phase == PH_RUN) {
		session_tick(b, now);
		events_tick(b, now);
		fetch_tick(b, now);
		uploads_tick(b, now);
		dispatch_hand_out(b, now);
		report_tick(b, now);
	}
	if (b->phase == PH_DRAIN) {
		session_tick(b, now);
		if (drained(b) || now >= b->drain_deadline) {
			if (!drained(b))
				log_warn("drain timeout: %d messages unanswered, %d replies unposted; they are kept for the next run",
					 inbox_open_count(b->ib), outbox_unposted(b->ob));
			bridge_stop(b, MC_EXIT_OK, "drained");
		}
	}
}

/* How long to sleep: until the nearest timer; not at all when answers that
 * came in this turn (finished changed) may have made work. */
static int64_t next_wakeup(struct bridge *b, unsigned long finished)
{
	int64_t now = now_ms();
	int64_t wait = IDLE_WAIT_MS;
	if (b->phase == PH_RUN) {
		/* An overdue heartbeat is due now (wait_min takes a negative wait for none). */
		wait = wait_min(wait, session_next_wakeup(b, now) > 0 ? session_next_wakeup(b, now) : 0);
		wait = wait_min(wait, fetch_next_wakeup(b, now));
		wait = wait_min(wait, uploads_next_wakeup(b, now));
		wait = wait_min(wait, events_next_wakeup(b, now));
		if (dispatch_ready(b))
			wait = wait_min(wait, route_next_due(b, now));
	} else if (b->phase == PH_DRAIN) {
		wait = wait_min(wait, b->drain_deadline - now);
		wait = wait_min(wait, session_next_wakeup(b, now));
	}
	wait = wait_min(wait, coproc_next_wakeup(b, now));
	wait = wait_min(wait, exec_next_wakeup(b, now));
	wait = wait_min(wait, child_linger_next(now));
	wait = wait_min(wait, runlimit_next_wakeup(b, now));
	wait = wait_min(wait, http_next_due(b->h, now));
	int64_t due = save_due(b, now);
	if (due >= 0)
		wait = wait_min(wait, due > now ? due - now : 0);
	if (wait < 0 || http_completed(b->h) != finished)
		wait = 0;
	return wait;
}

unsigned pollset_add(struct pollset *ps, int fd, short events)
{
	if (ps->n == ps->cap) {
		ps->cap = ps->cap ? ps->cap * 2 : 8;
		ps->fds = xrealloc(ps->fds, ps->cap * sizeof *ps->fds);
	}
	ps->fds[ps->n] = (struct curl_waitfd){ .fd = fd, .events = events };
	return ps->n++;
}

/* Waits up to timeout_ms (0: not at all) and sets each revents to what
 * poll(2) says, a hang-up included (how a pipe's end shows). (CURL_WAIT_POLLIN,
 * _POLLPRI and _POLLOUT have poll's values.) */
static int pollset_poll(struct pollset *ps, int64_t timeout_ms)
{
	struct pollfd *pfd = xcalloc(ps->n ? ps->n : 1, sizeof *pfd);
	for (unsigned i = 0; i < ps->n; i++)
		pfd[i] = (struct pollfd){ .fd = ps->fds[i].fd, .events = ps->fds[i].events };
	int n = poll(pfd, ps->n, (int)(timeout_ms > INT32_MAX ? INT32_MAX : timeout_ms));
	for (unsigned i = 0; i < ps->n; i++)
		ps->fds[i].revents = n > 0 ? pfd[i].revents : 0;
	free(pfd);
	return n;
}

static void add_http_socket(void *ps, int fd, short events)
{
	pollset_add(ps, fd, events);
}

/* The signals first (slot 0), then each module's descriptors, then libcurl's sockets. */
static void pollset_build(struct bridge *b, struct pollset *ps)
{
	ps->n = 0;
	pollset_add(ps, b->sig_fd, CURL_WAIT_POLLIN);
	dispatch_watch(b, ps);
	coproc_watch(b, ps);
	exec_watch(b, ps);
	http_watch(b->h, add_http_socket, ps);
}

/* What was ready goes to its owner: signals (children reaped) first; libcurl
 * hears of its sockets at the next http_process. */
static void service(struct bridge *b, const struct pollset *ps)
{
	if (ps->fds[0].revents)
		handle_signals(b);
	for (unsigned i = 1; i < ps->n; i++)
		if (ps->fds[i].revents)
			http_ready(b->h, ps->fds[i].fd, ps->fds[i].revents);
	dispatch_service(b, ps);
	coproc_service(b, ps);
	exec_service(b);
}

static bool handlers_alive(const struct bridge *b)
{
	return coproc_running(b) || exec_running(b) || child_lingering();
}

/* The bridge stops: the handlers get end of input and what is left of the
 * drain's time (all of --drain-timeout without a drain, none after a second
 * signal) to finish, then SIGTERM, then SIGKILL, while their output is still
 * read (a reply read now is kept for the next run). Bounded: what has not
 * ended a grace period after SIGKILL is left. */
static void finish_handlers(struct bridge *b)
{
	int64_t now = now_ms();
	int64_t wait = (int64_t)(b->s->drain_timeout * 1000);
	if (b->signals > 1)
		wait = 0;
	else if (b->drain_deadline)
		wait = b->drain_deadline > now ? b->drain_deadline - now : 0;
	coproc_stop(b, now, wait);
	exec_stop(b, now, wait);
	int64_t term_at = now + wait, give_up = term_at + 2 * CHILD_KILL_GRACE_MS + 500;
	struct pollset ps = { 0 };
	for (;;) {
		/* Groups left behind by a handler that ends now share the deadline. */
		child_linger_hurry(now, term_at - now);
		coproc_tick(b, now);
		exec_tick(b, now);
		child_linger_tick(now);
		if (!handlers_alive(b) || now >= give_up)
			break;
		int64_t w = give_up - now;
		w = wait_min(w, coproc_next_wakeup(b, now));
		w = wait_min(w, exec_next_wakeup(b, now));
		w = wait_min(w, child_linger_next(now));
		ps.n = 0;
		pollset_add(&ps, b->sig_fd, CURL_WAIT_POLLIN);
		coproc_watch(b, &ps);
		exec_watch(b, &ps);
		if (pollset_poll(&ps, w) > 0) {
			if (ps.fds[0].revents)
				handle_signals(b);
			coproc_service(b, &ps);
			exec_service(b);
		}
		now = now_ms();
	}
	free(ps.fds);
}

static void run(struct bridge *b)
{
	struct pollset ps = { 0 };
	while (b->phase != PH_END) {
		int64_t now = now_ms();
		run_timers(b, now);
		if (b->phase == PH_END)
			break;
		outbox_pump(b->ob);
		dispatch_flush(b);
		unsigned long finished = http_completed(b->h);
		http_process(b->h, now);
		if (b->phase == PH_END)
			break;
		/* A post that just finished may free the next one to its peer: out
		 * with it now, so the platform works on it while this turn goes on
		 * (replies to one peer go one at a time: the gap between them is
		 * what a drain from one peer waits for). */
		if (outbox_pump(b->ob)) {
			http_process(b->h, now_ms());
			if (b->phase == PH_END)
				break;
		}
		/* After the requests went out: the platform works while we write. */
		save_if_due(b);

		int64_t wait = next_wakeup(b, finished);
		pollset_build(b, &ps);
		/* One wait for everything, libcurl's sockets included. */
		if (pollset_poll(&ps, wait) > 0)
			service(b, &ps);
	}
	free(ps.fds);
	finish_handlers(b);
}

int loop_run(struct settings *s)
{
	struct bridge b;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	setup(&b, s);
	if (b.phase != PH_END) {
		b.phase = PH_REGISTER;
		session_register(&b);
		run(&b);
	}
	int status = b.exit_status;
	teardown(&b);
	curl_global_cleanup();
	return status;
}
