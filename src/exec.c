/* exec.c: --exec children: one per message, its input written, its output read, timed out, settled as a reply. */
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
#include "json.h"
#include "log.h"
#include "util.h"

#define EXEC_LABEL "--exec"             /* its stderr lines' handler, in JSON logs */

/* One --exec child and the message it handles. */
struct exec_job {
	struct exec_job *next;
	struct child p;
	char msg_id[UUID_LEN + 1];
	struct conv_id cid;      /* under --per: its conversation (cid.id owned) */
	char *key;               /* under --per: the conversation's key */
	struct buf input;        /* still to write to its stdin */
	size_t input_off;
	struct buf output;       /* what it printed */
	bool too_much;
	bool timed_out;
	int64_t deadline;
};

static void job_free(struct exec_job *j)
{
	child_release(&j->p);
	free((char *)j->cid.id);
	free(j->key);
	buf_free(&j->input);
	buf_free(&j->output);
	free(j);
}

bool exec_ready(const struct bridge *b)
{
	return b->exec.njobs < b->s->concurrency;
}

bool exec_conv_busy(const struct bridge *b, const struct conv_id *c)
{
	for (const struct exec_job *j = b->exec.jobs; j; j = j->next)
		if (j->key && conv_same(&j->cid, c))
			return true;
	return false;
}

bool exec_running(const struct bridge *b)
{
	return b->exec.jobs != NULL;
}

void exec_start(struct bridge *b, struct message *m, jv shown)
{
	struct exec_job *j = xcalloc(1, sizeof *j);
	memcpy(j->msg_id, m->id, sizeof j->msg_id);
	if (b->s->exec_input == EXEC_INPUT_JSON) {
		json_write(&j->input, shown);
		buf_append(&j->input, "\n", 1);
	} else {
		jv t = json_field(m->line, "text");
		if (jv_get_kind(t) == JV_KIND_STRING)
			buf_append(&j->input, jv_string_value(t), (size_t)jv_string_length_bytes(jv_copy(t)));
		jv_free(t);
		jv_free(shown);
	}
	jv method = json_field(m->line, "method");
	char *env[] = {
		xasprintf("MOLECULE_WORKSPACE_ID=%s", b->s->workspace_id),
		xasprintf("MOLECULE_CALLER_ID=%s", m->source_id ? m->source_id : ""),
		xasprintf("MOLECULE_MESSAGE_ID=%s", m->id),
		xasprintf("MOLECULE_TASK_ID=%s", m->task_id ? m->task_id : ""),
		xasprintf("MOLECULE_CONTEXT_ID=%s", m->context_id ? m->context_id : ""),
		xasprintf("MOLECULE_METHOD=%s", jv_get_kind(method) == JV_KIND_STRING ? jv_string_value(method) : ""),
		NULL, NULL, NULL,
	};
	jv_free(method);
	if (b->s->per_by != PER_NONE) {
		/* One command at a time per conversation: it is known by its key. */
		struct conv_id c = conv_of(b->s->per_by, m);
		j->cid.kind = c.kind;
		j->cid.id = c.id ? xstrdup(c.id) : NULL;
		j->key = conv_key(b->s->workspace_id, &c);
		char session[UUID_LEN + 1] = "";
		uuid_name(b->s->workspace_id, j->key, session);
		env[6] = xasprintf("MOLECULE_CONVERSATION=%s", j->key);
		env[7] = xasprintf("MOLECULE_SESSION_ID=%s", session);
	}
	char *argv[] = { "/bin/sh", "-c", b->s->exec, NULL };
	char *err = NULL;
	int rc = child_start(&j->p, argv, env, true, b->s->log_json, &err);
	for (char **e = env; *e; e++)
		free(*e);
	if (rc != 0) {
		int cannot = child_cannot_run(rc);
		log_error("--exec: %s", err);
		free(err);
		if (cannot) {
			inbox_requeue(b->ib, m, 0);
			bridge_stop(b, cannot, "the --exec shell cannot be run");
		} else {
			/* Cannot start now: the message stays, to be tried again later. */
			inbox_requeue(b->ib, m, now_ms() + backoff_ms(m->handouts, 1000, 60000));
		}
		job_free(j);
		return;
	}
	log_debug("handed out: message %s to --exec command (pid %d)", m->id, (int)j->p.pid);
	if (j->input.len == 0)
		child_close_stdin(&j->p);
	j->deadline = now_ms() + (int64_t)(b->s->exec_timeout * 1000);
	j->next = b->exec.jobs;
	b->exec.jobs = j;
	b->exec.njobs++;
}

static void job_write(struct exec_job *j)
{
	while (j->p.to_fd >= 0 && j->input_off < j->input.len) {
		ssize_t w = write(j->p.to_fd, j->input.p + j->input_off, j->input.len - j->input_off);
		if (w > 0)
			j->input_off += (size_t)w;
		else if (w < 0 && errno == EINTR)
			continue;
		else if (w < 0 && errno == EAGAIN)
			return;
		else
			break; /* it stopped reading: that is its business */
	}
	child_close_stdin(&j->p);
}

static void job_read(struct exec_job *j)
{
	char chunk[65536];
	for (;;) {
		ssize_t n = read(j->p.from_fd, chunk, sizeof chunk);
		if (n > 0) {
			if (j->output.len + (size_t)n > EXEC_OUTPUT_MAX) {
				j->too_much = true;
				child_close_stdout(&j->p);
				child_signal(&j->p, SIGKILL);
				return;
			}
			buf_append(&j->output, chunk, (size_t)n);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		child_close_stdout(&j->p);
		return;
	}
}

/* The shell could not run the command (126, 127) and no command has
 * succeeded yet: the command is wrong, not this message. It stays queued and
 * the bridge stops. */
static bool cannot_run(struct bridge *b, struct exec_job *j)
{
	int cannot = child_status_cannot_run(j->p.status);
	if (!cannot || j->timed_out || j->too_much || b->exec.succeeded)
		return false;
	struct message *m = inbox_find(b->ib, j->msg_id);
	if (m && m->state == MSG_OPEN)
		inbox_requeue(b->ib, m, 0);
	log_error("--exec: the command '%.200s' cannot be run (exit status %d: %s) and none has succeeded yet: "
		  "stopping, the messages are kept for the next run", b->s->exec, cannot,
		  cannot == MC_EXIT_NOT_FOUND ? "not found" : "not executable");
	bridge_stop(b, cannot, "the --exec command cannot be run");
	return true;
}

/* A child is finished once it has exited and its output is read to the end:
 * what it printed (or how it failed) is its reply. */
static void job_settle(struct bridge *b, struct exec_job *j)
{
	if (cannot_run(b, j))
		return;
	jv v = jv_object_set(jv_object(), jv_string("id"), jv_string(j->msg_id));
	int st = j->p.status;
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0 && !j->timed_out && !j->too_much)
		b->exec.succeeded = true;
	if (j->timed_out) {
		v = jv_object_set(v, jv_string("error"), jv_string_fmt("timed out after %g s", b->s->exec_timeout));
	} else if (j->too_much) {
		v = jv_object_set(v, jv_string("error"), jv_string("printed more than 1 MiB"));
	} else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		char *how = child_describe(st);
		v = jv_object_set(v, jv_string("error"), jv_string(how));
		free(how);
	} else {
		size_t n = j->output.len;
		while (n > 0 && (j->output.p[n - 1] == '\n' || j->output.p[n - 1] == '\r'))
			n--;
		/* Empty output is "nothing to say", not an empty reply. */
		if (n > 0) {
			jv text = jv_string_sized(j->output.p, (int)n);
			v = jv_object_set(v, jv_string("text"), text);
		}
	}
	dispatch_reply(b, v);
}

void exec_tick(struct bridge *b, int64_t now)
{
	for (struct exec_job **pp = &b->exec.jobs; *pp;) {
		struct exec_job *j = *pp;
		/* Timed until it has exited and its output is closed: a process it
		 * left holding its stdout keeps it running. */
		if (!j->timed_out && (!j->p.exited || j->p.from_fd >= 0) && now >= j->deadline) {
			/* The whole group: a shell's children go too. */
			j->timed_out = true;
			log_warn("--exec child for message %s timed out after %g s: killed", j->msg_id, b->s->exec_timeout);
			child_signal(&j->p, SIGKILL);
		}
		child_stop_tick(&j->p, now);
		if (j->p.exited && (j->p.from_fd < 0 || j->timed_out)) {
			*pp = j->next;
			b->exec.njobs--;
			child_read_stderr(&j->p, EXEC_LABEL, j->key);
			/* What it left running in its group is stopped in steps too. */
			child_linger(&j->p, now, (int64_t)(b->s->drain_timeout * 1000));
			job_settle(b, j);
			job_free(j);
			continue;
		}
		pp = &j->next;
	}
}

int64_t exec_next_wakeup(const struct bridge *b, int64_t now)
{
	int64_t wait = -1;
	for (const struct exec_job *j = b->exec.jobs; j; j = j->next) {
		if (!j->timed_out)
			wait = wait_min(wait, j->deadline > now ? j->deadline - now : 0);
		wait = wait_min(wait, child_stop_next(&j->p, now));
	}
	return wait;
}

void exec_watch(struct bridge *b, struct pollset *ps)
{
	for (struct exec_job *j = b->exec.jobs; j; j = j->next) {
		if (j->p.to_fd >= 0)
			pollset_add(ps, j->p.to_fd, CURL_WAIT_POLLOUT);
		if (j->p.from_fd >= 0)
			pollset_add(ps, j->p.from_fd, CURL_WAIT_POLLIN);
		if (j->p.err_fd >= 0)
			pollset_add(ps, j->p.err_fd, CURL_WAIT_POLLIN);
	}
}

void exec_service(struct bridge *b)
{
	for (struct exec_job *j = b->exec.jobs; j; j = j->next) {
		if (j->p.to_fd >= 0 && fd_events(j->p.to_fd, POLLOUT))
			job_write(j);
		if (j->p.from_fd >= 0 && fd_events(j->p.from_fd, POLLIN))
			job_read(j);
		if (j->p.err_fd >= 0 && fd_events(j->p.err_fd, POLLIN))
			child_read_stderr(&j->p, EXEC_LABEL, j->key);
	}
}

bool exec_reaped(struct bridge *b, pid_t pid, int status)
{
	for (struct exec_job *j = b->exec.jobs; j; j = j->next)
		if (j->p.pid == pid) {
			j->p.exited = true;
			j->p.status = status;
			if (j->p.from_fd >= 0)
				job_read(j);
			return true;
		}
	return false;
}

void exec_stop(struct bridge *b, int64_t now, int64_t wait_ms)
{
	for (struct exec_job *j = b->exec.jobs; j; j = j->next)
		child_stop(&j->p, now, wait_ms);
}

void exec_free(struct bridge *b)
{
	while (b->exec.jobs) {
		struct exec_job *j = b->exec.jobs;
		b->exec.jobs = j->next;
		if (child_group_alive(&j->p)) {
			log_warn("--exec child for message %s did not end: killed", j->msg_id);
			child_signal(&j->p, SIGKILL);
		}
		job_free(j);
	}
	b->exec.njobs = 0;
}
