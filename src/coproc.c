/* coproc.c: the co-process: start, restart with backoff when it dies, end of input when draining, stop. */
#include <config.h>

#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bridge.h"
#include "inbox.h"
#include "log.h"
#include "util.h"

#define STABLE_CHILD_MS 10000           /* a co-process that lived this long was not failing */

bool coproc_start(struct bridge *b)
{
	struct coproc *co = &b->co;
	char *err = NULL;
	char *env[] = { NULL, NULL };
	env[0] = xasprintf("MOLECULE_WORKSPACE_ID=%s", b->s->workspace_id);
	int rc = child_start(&co->p, b->s->command, env, true, &err);
	free(env[0]);
	if (rc != 0) {
		log_error("%s", err);
		free(err);
		return false;
	}
	dispatch_attach(b, co->p.to_fd, co->p.from_fd);
	log_debug("started handler %s (pid %d)", b->s->command[0], (int)co->p.pid);
	return true;
}

bool coproc_ready(const struct bridge *b)
{
	return b->co.p.pid > 0 && b->co.p.to_fd >= 0;
}

bool coproc_running(const struct bridge *b)
{
	return b->mode == MODE_COPROC && b->co.p.pid > 0;
}

void coproc_answered(struct bridge *b)
{
	b->co.failures = 0;
}

void coproc_output_closed(struct bridge *b)
{
	/* Its exit, reaped through SIGCHLD, hands its messages to a new one. */
	child_close_stdout(&b->co.p);
	child_signal(&b->co.p, SIGTERM);
}

/* The co-process is gone: every message it had not answered goes to the next one. */
static void exited(struct bridge *b, int status)
{
	struct coproc *co = &b->co;
	int64_t now = now_ms();
	char *how = child_describe(status);
	co->p.exited = true;
	if (co->p.from_fd >= 0) {
		/* Whatever it printed before dying still counts. */
		char chunk[65536];
		ssize_t n;
		while ((n = read(co->p.from_fd, chunk, sizeof chunk)) > 0)
			dispatch_feed(b, chunk, (size_t)n);
		dispatch_feed_end(b);
	}
	child_close_stdin(&co->p);
	child_close_stdout(&co->p);
	dispatch_detach(b);
	/* Failing means dying early without having answered anything. */
	bool quick = now - co->p.started_at < STABLE_CHILD_MS;
	co->p.pid = 0;
	int requeued = inbox_requeue_open(b->ib);
	if (b->phase != PH_RUN && b->phase != PH_REGISTER) {
		log_info("handler ended (%s)", how);
		free(how);
		b->posts_only = true;
		return;
	}
	co->failures = quick ? co->failures + 1 : 1;
	if (co->failures > b->s->restart_limit) {
		log_error("handler %s keeps failing (%s, %d times in a row): giving up", b->s->command[0], how, co->failures);
		free(how);
		bridge_stop(b, WIFEXITED(status) && WEXITSTATUS(status) ? WEXITSTATUS(status) : MC_EXIT_ERROR,
			    "the handler keeps failing");
		return;
	}
	int64_t delay = backoff_ms(co->failures, 200, 10000);
	log_warn("handler %s ended (%s); %d unanswered messages go to its restart in %lld ms",
		 b->s->command[0], how, requeued, (long long)delay);
	free(how);
	co->restart_at = now + delay;
}

bool coproc_reaped(struct bridge *b, pid_t pid, int status)
{
	if (b->mode != MODE_COPROC || pid != b->co.p.pid)
		return false;
	exited(b, status);
	return true;
}

void coproc_tick(struct bridge *b, int64_t now)
{
	struct coproc *co = &b->co;
	if (b->mode != MODE_COPROC)
		return;
	if ((b->phase == PH_RUN || b->phase == PH_REGISTER) && co->p.pid == 0 && co->restart_at &&
	    now >= co->restart_at) {
		co->restart_at = 0;
		if (!coproc_start(b)) {
			co->failures++;
			if (co->failures > b->s->restart_limit) {
				log_error("handler %s cannot be started again: giving up", b->s->command[0]);
				bridge_stop(b, MC_EXIT_NOT_FOUND, "the handler cannot be started");
				return;
			}
			co->restart_at = now + backoff_ms(co->failures, 200, 10000);
		}
	}
	/* Draining: once its last message is written, end of input tells it to finish. */
	if (b->phase == PH_DRAIN && co->p.pid > 0 && co->p.to_fd >= 0 && !dispatch_writing(b)) {
		dispatch_close_output(b);
		child_close_stdin(&co->p);
	}
}

int64_t coproc_next_wakeup(const struct bridge *b, int64_t now)
{
	if (b->co.restart_at && b->phase != PH_DRAIN)
		return b->co.restart_at - now;
	return -1;
}

void coproc_stop(struct bridge *b)
{
	struct child *p = &b->co.p;
	if (p->pid <= 0)
		return;
	child_close_stdin(p);
	child_stop_all(&p, 1);
}
