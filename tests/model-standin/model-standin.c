/* model-standin.c: a local stand-in of the Anthropic Messages API, so that Claude Code runs offline in tests. */
#include <config.h>

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jv.h>
#include <microhttpd.h>

#include "json.h"
#include "util.h"

#define BODY_CAP (64L * 1024 * 1024)
#define SLOW_CHUNK_WORDS 1 /* a slow stream sends its answer a word at a time */

/* What the stand-in was told at start; the fault counters count down as requests use them. */
static struct {
	double delay_s;         /* wait before each answer to a message request */
	double slow_s;          /* gap between the chunks of a slow stream (0: one chunk) */
	long overload;          /* message requests still to answer 529 overloaded_error */
	long refuse;            /* message requests still to answer 400 invalid_request_error */
	long cut;               /* streams still to cut after message_start */
	long stream_error;      /* streams still to end with an error event after message_start */
	const char *fault_match; /* faults only for requests whose last user text holds this */
	FILE *log;              /* request log, one JSON object a line */
	const char *bodies_dir; /* every request body saved here as <n>.json */
	long requests;          /* requests seen (numbers the saved bodies) */
	pthread_mutex_t lock;
} standin = { .lock = PTHREAD_MUTEX_INITIALIZER };

static _Noreturn void die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static _Noreturn void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("model-standin: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(1);
}

static atomic_bool stopping; /* set at shutdown: waits end early */

/* Waits s seconds, in steps short enough that a shutdown never waits for a delay. */
static void sleep_s(double s)
{
	int64_t end = now_ms() + (int64_t)(s * 1000);
	for (int64_t left; !atomic_load(&stopping) && (left = end - now_ms()) > 0;) {
		struct timespec ts = { .tv_nsec = (left < 50 ? left : 50) * 1000000L };
		nanosleep(&ts, NULL);
	}
}

/* ---------- reading a Messages request ---------- */

/* A user message's own words: its text blocks, without the <system-reminder> blocks
 * Claude Code adds and without tool results. "" when it has none. */
static char *user_text(jv msg)
{
	struct buf b = { 0 };
	jv content = json_field(msg, "content");
	buf_append(&b, "", 0);
	if (jv_get_kind(content) == JV_KIND_STRING) {
		buf_append(&b, jv_string_value(content), (size_t)jv_string_length_bytes(jv_copy(content)));
	} else if (jv_get_kind(content) == JV_KIND_ARRAY) {
		jv_array_foreach(content, i, block) {
			jv type = json_field(block, "type"), text = json_field(block, "text");
			if (jv_get_kind(type) == JV_KIND_STRING && strcmp(jv_string_value(type), "text") == 0 &&
			    jv_get_kind(text) == JV_KIND_STRING &&
			    strncmp(jv_string_value(text), "<system-reminder>", 17) != 0)
				buf_append(&b, jv_string_value(text), (size_t)jv_string_length_bytes(jv_copy(text)));
			jv_free(type);
			jv_free(text);
			jv_free(block);
		}
	}
	jv_free(content);
	return b.p;
}

/* What the log and the answer need from a request body. */
struct turn {
	long number;    /* the request's number, from 1: makes message ids unique */
	jv body;        /* the parsed body (an object), or invalid */
	char *model;
	bool stream;
	int messages;   /* length of "messages" */
	jv user_texts;  /* the words of every user message that has some, oldest first */
	const char *last; /* the last of them, "" when none (points into user_texts) */
	jv tool_call;   /* {name, input} asked for by a last user text "#tool {...}", or null */
	char *tool_result; /* the text of a tool result ending the request, or NULL */
};

/* The text of the tool result in a user message, or NULL when it has none. */
static char *tool_result_text(jv msg)
{
	char *text = NULL;
	jv content = json_field(msg, "content");
	if (jv_get_kind(content) == JV_KIND_ARRAY) {
		jv_array_foreach(content, i, block) {
			jv type = json_field(block, "type");
			if (!text && jv_get_kind(type) == JV_KIND_STRING &&
			    strcmp(jv_string_value(type), "tool_result") == 0) {
				jv inner = jv_object_set(jv_object(), jv_string("content"),
							 json_field(block, "content"));
				text = user_text(inner); /* a string, or text blocks */
				jv_free(inner);
			}
			jv_free(type);
			jv_free(block);
		}
	}
	jv_free(content);
	return text;
}

/* A last user text "#tool {"name": ..., "input": {...}}" asks for that tool call (the
 * JSON on the rest of its first line). */
static jv tool_call_asked(const char *last)
{
	if (strncmp(last, "#tool ", 6) != 0)
		return jv_null();
	const char *json = last + 6, *nl = strchr(json, '\n');
	jv call = jv_parse_sized(json, (int)(nl ? (size_t)(nl - json) : strlen(json)));
	jv name = json_field(call, "name"), input = json_field(call, "input");
	bool ok = jv_get_kind(name) == JV_KIND_STRING && jv_get_kind(input) == JV_KIND_OBJECT;
	jv_free(name);
	jv_free(input);
	if (ok)
		return call;
	jv_free(call);
	return jv_null();
}

static void turn_read(struct turn *t, const char *body, size_t len)
{
	*t = (struct turn){ .body = jv_invalid(), .user_texts = jv_array(), .last = "",
			    .tool_call = jv_null() };
	if (len == 0)
		return;
	jv v = jv_parse_sized(body, (int)len);
	if (jv_get_kind(v) != JV_KIND_OBJECT) {
		jv_free(v);
		return;
	}
	t->body = v;
	t->model = json_string_dup(v, "model");
	jv stream = json_field(v, "stream");
	t->stream = jv_get_kind(stream) == JV_KIND_TRUE;
	jv_free(stream);
	jv msgs = json_field(v, "messages");
	if (jv_get_kind(msgs) == JV_KIND_ARRAY) {
		t->messages = jv_array_length(jv_copy(msgs));
		jv_array_foreach(msgs, i, m) {
			jv role = json_field(m, "role");
			if (jv_get_kind(role) == JV_KIND_STRING && strcmp(jv_string_value(role), "user") == 0) {
				char *words = user_text(m);
				if (*words)
					t->user_texts = jv_array_append(t->user_texts, jv_string(words));
				free(words);
				free(t->tool_result); /* only one after the last answer counts */
				t->tool_result = tool_result_text(m);
			} else if (jv_get_kind(role) == JV_KIND_STRING &&
				   strcmp(jv_string_value(role), "assistant") == 0) {
				free(t->tool_result);
				t->tool_result = NULL;
			}
			jv_free(role);
			jv_free(m);
		}
	}
	jv_free(msgs);
	int n = jv_array_length(jv_copy(t->user_texts));
	if (n > 0) {
		/* The array keeps its element alive: the pointer stays good until turn_free. */
		jv last = jv_array_get(jv_copy(t->user_texts), n - 1);
		t->last = jv_string_value(last);
		jv_free(last);
	}
	if (!t->tool_result) {
		jv_free(t->tool_call);
		t->tool_call = tool_call_asked(t->last);
	}
}

static void turn_free(struct turn *t)
{
	jv_free(t->body);
	jv_free(t->user_texts);
	jv_free(t->tool_call);
	free(t->tool_result);
	free(t->model);
}

/* The stand-in's whole intelligence: an answer that shows what it was given. */
static char *turn_answer(const struct turn *t)
{
	if (t->tool_result)
		return xasprintf("tool result: %s", t->tool_result);
	return xasprintf("reply to: %s (turn %d, %d messages in context)", t->last,
			 jv_array_length(jv_copy(t->user_texts)), t->messages);
}

/* ---------- faults ---------- */

enum fault { FAULT_NONE, FAULT_OVERLOAD, FAULT_REFUSE, FAULT_CUT, FAULT_STREAM_ERROR };

static const char *fault_name(enum fault f)
{
	switch (f) {
	case FAULT_OVERLOAD: return "overload";
	case FAULT_REFUSE: return "refuse";
	case FAULT_CUT: return "cut";
	case FAULT_STREAM_ERROR: return "stream_error";
	default: return NULL;
	}
}

/* Takes the next fault that applies to this message request (caller holds the lock). */
static enum fault fault_take(const struct turn *t)
{
	if (standin.fault_match && !strstr(t->last, standin.fault_match))
		return FAULT_NONE;
	if (standin.overload > 0) {
		standin.overload--;
		return FAULT_OVERLOAD;
	}
	if (standin.refuse > 0) {
		standin.refuse--;
		return FAULT_REFUSE;
	}
	if (t->stream && standin.cut > 0) {
		standin.cut--;
		return FAULT_CUT;
	}
	if (t->stream && standin.stream_error > 0) {
		standin.stream_error--;
		return FAULT_STREAM_ERROR;
	}
	return FAULT_NONE;
}

/* ---------- the request log ---------- */

static void log_request(const char *method, const char *uri, const char *session,
			const struct turn *t, unsigned status, enum fault f)
{
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	jv e = jv_object();
	/* When the answer began (after any delay): wall clock, milliseconds. */
	e = jv_object_set(e, jv_string("t_ms"),
			  jv_number((double)now.tv_sec * 1000 + (double)(now.tv_nsec / 1000000)));
	e = jv_object_set(e, jv_string("method"), jv_string(method));
	e = jv_object_set(e, jv_string("path"), jv_string(uri));
	e = jv_object_set(e, jv_string("status"), jv_number(status));
	e = jv_object_set(e, jv_string("session"), session ? jv_string(session) : jv_null());
	if (jv_get_kind(t->body) == JV_KIND_OBJECT) {
		e = jv_object_set(e, jv_string("model"), t->model ? jv_string(t->model) : jv_null());
		e = jv_object_set(e, jv_string("stream"), jv_bool(t->stream));
		e = jv_object_set(e, jv_string("messages"), jv_number(t->messages));
		e = jv_object_set(e, jv_string("turn"), jv_number(jv_array_length(jv_copy(t->user_texts))));
		e = jv_object_set(e, jv_string("last_user_text"), jv_string(t->last));
		e = jv_object_set(e, jv_string("user_texts"), jv_copy(t->user_texts));
		e = jv_object_set(e, jv_string("tool_call"), jv_copy(t->tool_call));
		e = jv_object_set(e, jv_string("tool_result"),
				  t->tool_result ? jv_string(t->tool_result) : jv_null());
	}
	e = jv_object_set(e, jv_string("fault"), fault_name(f) ? jv_string(fault_name(f)) : jv_null());
	struct buf b = { 0 };
	json_write(&b, e);
	buf_append(&b, "\n", 1);
	if (standin.log) {
		fwrite(b.p, 1, b.len, standin.log);
		fflush(standin.log);
	}
	buf_free(&b);
}

static void save_body(long n, const char *body, size_t len)
{
	if (!standin.bodies_dir)
		return;
	char *path = xasprintf("%s/%06ld.json", standin.bodies_dir, n);
	FILE *f = fopen(path, "w");
	if (f) {
		fwrite(body, 1, len, f);
		fclose(f);
	}
	free(path);
}

/* ---------- answers ---------- */

static enum MHD_Result answer_json(struct MHD_Connection *c, unsigned status, jv v)
{
	size_t len;
	char *text = json_dump(v, &len);
	struct MHD_Response *r = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
	MHD_add_response_header(r, "Content-Type", "application/json");
	MHD_add_response_header(r, "request-id", "req_standin");
	enum MHD_Result ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

static jv api_error(const char *type, const char *message)
{
	jv err = jv_object_set(jv_object(), jv_string("type"), jv_string(type));
	err = jv_object_set(err, jv_string("message"), jv_string(message));
	return jv_object_set(jv_object_set(jv_object(), jv_string("type"), jv_string("error")),
			     jv_string("error"), err);
}

static jv usage_counts(int input, int output)
{
	jv u = jv_object_set(jv_object(), jv_string("input_tokens"), jv_number(input));
	return jv_object_set(u, jv_string("output_tokens"), jv_number(output));
}

/* The tool_use block of a turn that asked for a tool call, with this input. */
static jv tool_use_block(const struct turn *t, jv input)
{
	jv b = jv_object_set(jv_object(), jv_string("type"), jv_string("tool_use"));
	b = jv_object_set(b, jv_string("id"), jv_string_fmt("toolu_standin_%06ld", t->number));
	b = jv_object_set(b, jv_string("name"), json_field(t->tool_call, "name"));
	return jv_object_set(b, jv_string("input"), input);
}

/* The message object of an answer (text, or the tool call the turn asked for); a
 * stream starts with it not done: no content yet. */
static jv message_object(const struct turn *t, const char *text, bool done)
{
	jv m = jv_object();
	m = jv_object_set(m, jv_string("id"), jv_string_fmt("msg_standin_%06ld", t->number));
	m = jv_object_set(m, jv_string("type"), jv_string("message"));
	m = jv_object_set(m, jv_string("role"), jv_string("assistant"));
	jv content = jv_array();
	bool tool = jv_get_kind(t->tool_call) == JV_KIND_OBJECT;
	if (done && tool) {
		content = jv_array_append(content, tool_use_block(t, json_field(t->tool_call, "input")));
	} else if (done) {
		jv block = jv_object_set(jv_object(), jv_string("type"), jv_string("text"));
		content = jv_array_append(content, jv_object_set(block, jv_string("text"), jv_string(text)));
	}
	m = jv_object_set(m, jv_string("content"), content);
	m = jv_object_set(m, jv_string("model"), jv_string(t->model ? t->model : "standin"));
	m = jv_object_set(m, jv_string("stop_reason"),
			  done ? jv_string(tool ? "tool_use" : "end_turn") : jv_null());
	m = jv_object_set(m, jv_string("stop_sequence"), jv_null());
	return jv_object_set(m, jv_string("usage"), usage_counts(t->messages + 1, done ? 8 : 1));
}

/* A stream: its server-sent events, built up front, handed to libmicrohttpd by
 * sse_read; a slow stream sleeps before each text chunk, a cut one stops early. */
struct sse {
	char **events;
	size_t n, next, off;
	size_t slow_from, slow_to; /* events in [slow_from, slow_to) wait standin.slow_s first */
	bool cut;                  /* end with an error (the connection is dropped) after the events */
	bool waited;
};

static void sse_add(struct sse *s, const char *name, jv data)
{
	struct buf b = { 0 };
	buf_append(&b, "event: ", 7);
	buf_append(&b, name, strlen(name));
	buf_append(&b, "\ndata: ", 7);
	json_write(&b, data);
	buf_append(&b, "\n\n", 2);
	s->events = xrealloc(s->events, (s->n + 1) * sizeof *s->events);
	s->events[s->n++] = b.p;
}

static jv typed(const char *type)
{
	return jv_object_set(jv_object(), jv_string("type"), jv_string(type));
}

static void sse_build(struct sse *s, const struct turn *t, const char *text, enum fault f)
{
	sse_add(s, "message_start", jv_object_set(typed("message_start"), jv_string("message"),
						    message_object(t, NULL, false)));
	if (f == FAULT_CUT) {
		s->cut = true;
		return;
	}
	if (f == FAULT_STREAM_ERROR) {
		sse_add(s, "error", api_error("overloaded_error", "Overloaded"));
		return;
	}
	bool tool = jv_get_kind(t->tool_call) == JV_KIND_OBJECT;
	jv block = tool ? tool_use_block(t, jv_object())
			: jv_object_set(typed("text"), jv_string("text"), jv_string(""));
	jv start = jv_object_set(typed("content_block_start"), jv_string("index"), jv_number(0));
	sse_add(s, "content_block_start", jv_object_set(start, jv_string("content_block"), block));
	if (tool) {
		/* The tool's input arrives as JSON text in pieces: here, one piece. */
		char *input = json_dump(json_field(t->tool_call, "input"), NULL);
		jv delta = jv_object_set(typed("input_json_delta"), jv_string("partial_json"), jv_string(input));
		jv ev = jv_object_set(typed("content_block_delta"), jv_string("index"), jv_number(0));
		sse_add(s, "content_block_delta", jv_object_set(ev, jv_string("delta"), delta));
		free(input);
		text = "";
	}
	s->slow_from = s->n;
	/* Slow: a word (with its trailing space) per chunk; else the whole text at once. */
	const char *p = text;
	while (*p) {
		size_t len = strlen(p);
		if (standin.slow_s > 0) {
			const char *space = strchr(p, ' ');
			len = space ? (size_t)(space - p) + 1 : len;
		}
		jv delta = jv_object_set(typed("text_delta"), jv_string("text"), jv_string_sized(p, (int)len));
		jv ev = jv_object_set(typed("content_block_delta"), jv_string("index"), jv_number(0));
		sse_add(s, "content_block_delta", jv_object_set(ev, jv_string("delta"), delta));
		p += len;
	}
	s->slow_to = s->n;
	sse_add(s, "content_block_stop",
		jv_object_set(typed("content_block_stop"), jv_string("index"), jv_number(0)));
	jv mdelta = jv_object_set(jv_object(), jv_string("stop_reason"),
				  jv_string(tool ? "tool_use" : "end_turn"));
	mdelta = jv_object_set(mdelta, jv_string("stop_sequence"), jv_null());
	jv md = jv_object_set(typed("message_delta"), jv_string("delta"), mdelta);
	sse_add(s, "message_delta", jv_object_set(md, jv_string("usage"), usage_counts(t->messages + 1, 8)));
	sse_add(s, "message_stop", typed("message_stop"));
}

static ssize_t sse_read(void *cls, uint64_t pos, char *out, size_t max)
{
	struct sse *s = cls;
	(void)pos;
	if (s->next == s->n)
		return s->cut ? MHD_CONTENT_READER_END_WITH_ERROR : MHD_CONTENT_READER_END_OF_STREAM;
	if (s->off == 0 && !s->waited && s->next >= s->slow_from && s->next < s->slow_to) {
		sleep_s(standin.slow_s);
		s->waited = true;
	}
	const char *ev = s->events[s->next];
	size_t len = strlen(ev) - s->off;
	if (len > max)
		len = max;
	memcpy(out, ev + s->off, len);
	s->off += len;
	if (ev[s->off] == '\0') {
		s->next++;
		s->off = 0;
		s->waited = false;
	}
	return (ssize_t)len;
}

static void sse_free(void *cls)
{
	struct sse *s = cls;
	for (size_t i = 0; i < s->n; i++)
		free(s->events[i]);
	free(s->events);
	free(s);
}

static enum MHD_Result answer_stream(struct MHD_Connection *c, const struct turn *t,
				     const char *text, enum fault f)
{
	struct sse *s = xcalloc(1, sizeof *s);
	sse_build(s, t, text, f);
	struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, sse_read, s, sse_free);
	MHD_add_response_header(r, "Content-Type", "text/event-stream");
	MHD_add_response_header(r, "Cache-Control", "no-cache");
	MHD_add_response_header(r, "request-id", "req_standin");
	enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, r);
	MHD_destroy_response(r);
	return ret;
}

/* ---------- requests ---------- */

struct request {
	char *uri;        /* path with query, as sent */
	bool started;     /* the first call (headers only) has been seen */
	struct buf body;
	bool too_big;
};

static bool path_is(const char *uri, const char *path)
{
	size_t n = strlen(path);
	return strncmp(uri, path, n) == 0 && (uri[n] == '\0' || uri[n] == '?');
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
				  const char *method, const char *version, const char *upload,
				  size_t *upload_size, void **req_cls)
{
	struct request *rq = *req_cls;
	(void)cls, (void)url, (void)version;
	if (!rq->started) {
		rq->started = true;
		return MHD_YES;
	}
	if (*upload_size) {
		if (rq->body.len + *upload_size > BODY_CAP)
			rq->too_big = true;
		else
			buf_append(&rq->body, upload, *upload_size);
		*upload_size = 0;
		return MHD_YES;
	}

	struct turn t;
	turn_read(&t, rq->body.p ? rq->body.p : "", rq->body.len);
	const char *session = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Claude-Code-Session-Id");
	bool post = strcmp(method, "POST") == 0;
	bool messages = post && path_is(rq->uri, "/v1/messages");
	enum fault f = FAULT_NONE;
	unsigned status = MHD_HTTP_OK;

	pthread_mutex_lock(&standin.lock);
	long n = t.number = ++standin.requests;
	if (messages && jv_get_kind(t.body) == JV_KIND_OBJECT)
		f = fault_take(&t);
	pthread_mutex_unlock(&standin.lock);
	if (rq->body.len)
		save_body(n, rq->body.p, rq->body.len);

	enum MHD_Result ret;
	if (rq->too_big) {
		status = 413;
		ret = answer_json(c, status, api_error("request_too_large", "request body too large"));
	} else if ((messages || (post && path_is(rq->uri, "/v1/messages/count_tokens"))) &&
		   jv_get_kind(t.body) != JV_KIND_OBJECT) {
		status = MHD_HTTP_BAD_REQUEST;
		ret = answer_json(c, status, api_error("invalid_request_error", "body is not a JSON object"));
	} else if (messages && f == FAULT_OVERLOAD) {
		status = 529;
		ret = answer_json(c, status, api_error("overloaded_error", "Overloaded"));
	} else if (messages && f == FAULT_REFUSE) {
		status = MHD_HTTP_BAD_REQUEST;
		ret = answer_json(c, status, api_error("invalid_request_error",
						       "prompt is too long: 250000 tokens > 200000 maximum"));
	} else if (messages) {
		sleep_s(standin.delay_s);
		char *text = turn_answer(&t);
		if (t.stream)
			ret = answer_stream(c, &t, text, f);
		else
			ret = answer_json(c, status, message_object(&t, text, true));
		free(text);
	} else if (post && path_is(rq->uri, "/v1/messages/count_tokens")) {
		ret = answer_json(c, status, jv_object_set(jv_object(), jv_string("input_tokens"),
							  jv_number(t.messages + 1)));
	} else if (strcmp(method, "HEAD") == 0 && path_is(rq->uri, "/")) {
		ret = answer_json(c, status, jv_object());
	} else {
		status = MHD_HTTP_NOT_FOUND;
		ret = answer_json(c, status, api_error("not_found_error", "not served by the stand-in"));
	}
	log_request(method, rq->uri, session, &t, status, f);
	turn_free(&t);
	return ret;
}

/* The full URI (with its query) of a new request: libmicrohttpd hands what this
 * returns to on_request as its per-request state. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *c)
{
	struct request *rq = xcalloc(1, sizeof *rq);
	(void)cls, (void)c;
	rq->uri = xstrdup(uri);
	return rq;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **req_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct request *rq = *req_cls;
	(void)cls, (void)c, (void)toe;
	if (!rq)
		return;
	free(rq->uri);
	buf_free(&rq->body);
	free(rq);
	*req_cls = NULL;
}

/* ---------- start-up ---------- */

static void write_port_file(const char *path, unsigned port)
{
	char *tmp = xasprintf("%s.%ld.tmp", path, (long)getpid());
	FILE *f = fopen(tmp, "w");
	if (!f)
		die("%s: %s", tmp, strerror(errno));
	fprintf(f, "%u\n", port);
	if (fclose(f) != 0 || rename(tmp, path) != 0)
		die("%s: %s", path, strerror(errno));
	free(tmp);
}

static _Noreturn void usage(FILE *to, int code)
{
	fputs("usage: model-standin --port-file FILE [--port N] [--log FILE] [--bodies DIR]\n"
	      "         [--delay SECS] [--slow SECS] [--overload N] [--refuse N] [--cut N]\n"
	      "         [--stream-error N] [--fault-match TEXT]\n"
	      "  --log FILE        one JSON line per request: t_ms, method, path, status, session,\n"
	      "                    model, stream, messages, turn, last_user_text, user_texts,\n"
	      "                    tool_call, tool_result, fault\n"
	      "A last user text \"#tool {\"name\": N, \"input\": {...}}\" (a line) is answered with\n"
	      "that tool call, its result with \"tool result: <text>\".\n"
	      "  --bodies DIR      save every request body as DIR/<n>.json\n"
	      "  --delay SECS      wait before answering each message request (default 0)\n"
	      "  --slow SECS       stream the answer a word at a time, SECS apart\n"
	      "  --overload N      answer the next N message requests 529 overloaded_error\n"
	      "  --refuse N        answer the next N message requests 400 invalid_request_error\n"
	      "  --cut N           drop the connection of the next N streams after message_start\n"
	      "  --stream-error N  end the next N streams with an error event after message_start\n"
	      "  --fault-match T   faults only for requests whose last user text contains T\n",
	      to);
	exit(code);
}

static long count_arg(const char *s)
{
	long v;
	if (parse_long(s, 0, LONG_MAX, &v) != 0)
		usage(stderr, 2);
	return v;
}

static double seconds_arg(const char *s)
{
	double v;
	if (parse_seconds(s, 0, 3600, &v) != 0)
		usage(stderr, 2);
	return v;
}

int main(int argc, char **argv)
{
	static const struct option options[] = {
		{ "port-file", required_argument, NULL, 'p' },
		{ "port", required_argument, NULL, 'P' },
		{ "log", required_argument, NULL, 'l' },
		{ "bodies", required_argument, NULL, 'b' },
		{ "delay", required_argument, NULL, 'd' },
		{ "slow", required_argument, NULL, 's' },
		{ "overload", required_argument, NULL, 'o' },
		{ "refuse", required_argument, NULL, 'r' },
		{ "cut", required_argument, NULL, 'c' },
		{ "stream-error", required_argument, NULL, 'e' },
		{ "fault-match", required_argument, NULL, 'm' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *port_file = NULL, *log_path = NULL;
	long port = 0;
	int opt;

	while ((opt = getopt_long(argc, argv, "h", options, NULL)) != -1) {
		switch (opt) {
		case 'p': port_file = optarg; break;
		case 'P':
			if (parse_long(optarg, 0, 65535, &port) != 0)
				usage(stderr, 2);
			break;
		case 'l': log_path = optarg; break;
		case 'b': standin.bodies_dir = optarg; break;
		case 'd': standin.delay_s = seconds_arg(optarg); break;
		case 's': standin.slow_s = seconds_arg(optarg); break;
		case 'o': standin.overload = count_arg(optarg); break;
		case 'r': standin.refuse = count_arg(optarg); break;
		case 'c': standin.cut = count_arg(optarg); break;
		case 'e': standin.stream_error = count_arg(optarg); break;
		case 'm': standin.fault_match = optarg; break;
		case 'h': usage(stdout, 0);
		default: usage(stderr, 2);
		}
	}
	if (!port_file || optind != argc)
		usage(stderr, 2);
	if (log_path && !(standin.log = fopen(log_path, "a")))
		die("%s: %s", log_path, strerror(errno));

	/* Every thread inherits this mask; the main thread takes the signals with sigwait. */
	sigset_t stop_signals;
	sigemptyset(&stop_signals);
	sigaddset(&stop_signals, SIGTERM);
	sigaddset(&stop_signals, SIGINT);
	pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
	signal(SIGPIPE, SIG_IGN);

	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	struct MHD_Daemon *d = MHD_start_daemon(
		MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
		MHD_USE_AUTO | MHD_USE_ERROR_LOG,
		0, NULL, NULL, on_request, NULL,
		MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
		MHD_OPTION_URI_LOG_CALLBACK, on_uri, NULL,
		MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
		MHD_OPTION_END);
	if (!d)
		die("cannot listen on 127.0.0.1:%ld", port);
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
	if (!info || info->port == 0)
		die("cannot tell the listening port");
	write_port_file(port_file, info->port);

	int sig;
	while (sigwait(&stop_signals, &sig) != 0)
		;
	atomic_store(&stopping, true);
	MHD_stop_daemon(d);
	if (standin.log)
		fclose(standin.log);
	return 0;
}
