/* limits.c: the fake platform's rate limit, and the faults the control API injects into its answers. */
#include <config.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fake.h"

/*
 * A fixed window per key, as the platform keeps it: the budget refills whole when the
 * window ends, and Retry-After is the seconds left in the window, rounded down (so 0
 * while less than a second is left).
 */
bool rate_limit_take(const char *key, struct rate_headers *rh, long *retry_after)
{
	struct bucket *b = NULL;
	int64_t now = now_ms();

	*rh = (struct rate_headers){ .unlimited = platform.rate_unlimited };
	if (platform.rate_unlimited || platform.rate_limit <= 0)
		return true;
	for (size_t i = 0; i < platform.nbuckets && !b; i++)
		if (strcmp(platform.buckets[i].key, key) == 0)
			b = &platform.buckets[i];
	if (!b) {
		GROW(platform.buckets, platform.buckets_cap, platform.nbuckets);
		b = &platform.buckets[platform.nbuckets++];
		*b = (struct bucket){ .key = xstrdup(key), .window_start_ms = now };
	}
	if (now - b->window_start_ms >= platform.rate_window_ms) {
		b->used = 0;
		b->window_start_ms = now;
	}
	long left = platform.rate_limit - b->used;
	*rh = (struct rate_headers){
		.present = true, .limit = platform.rate_limit,
		.remaining = left > 1 ? left - 1 : 0,
		.reset = (b->window_start_ms + platform.rate_window_ms - now) / 1000,
	};
	if (left <= 0) {
		*retry_after = rh->reset;
		return false;
	}
	b->used++;
	return true;
}

void buckets_clear(void)
{
	for (size_t i = 0; i < platform.nbuckets; i++)
		free(platform.buckets[i].key);
	platform.nbuckets = 0;
}

void reply_too_many(struct reply *rp, long retry_after)
{
	jv o = jv_object_set(jv_object(), jv_string("error"), jv_string("rate limit exceeded"));
	o = jv_object_set(o, jv_string("retry_after"), jv_number((double)retry_after));
	reply_json(rp, 429, o);
	rp->retry_after = retry_after;
}

/*
 * Applies the active faults to a request of endpoint ep about workspace ws, in the
 * order they were added. Delays add up; the first fault that hits with an answer
 * decides it. Returns true when a fault decided the answer.
 */
bool faults_apply(enum endpoint ep, const char *ws, struct reply *rp, unsigned *delay_ms)
{
	bool decided = false;

	for (size_t i = 0; i < platform.nfaults; i++) {
		struct fault *f = &platform.faults[i];
		if (!f->any_endpoint && f->endpoint != ep)
			continue;
		if (f->workspace_id && strcmp(f->workspace_id, ws) != 0)
			continue;
		if (decided && f->action != FAULT_DELAY)
			continue;
		if (f->action == FAULT_EVERY_429) {
			if (++f->seen % f->every != 0)
				continue;
		} else if (f->ratio < 1.0 && random_unit() >= f->ratio) {
			continue;
		}
		*delay_ms += f->delay_ms;
		if (f->dribble_ms > rp->dribble_ms)
			rp->dribble_ms = f->dribble_ms;
		switch (f->action) {
		case FAULT_DELAY:
			break;
		case FAULT_FAIL:
		case FAULT_RAW:
			reply_raw(rp, f->status, f->body, f->body_len);
			rp->retry_after = f->retry_after;
			decided = true;
			break;
		case FAULT_GENERATED:
			free(rp->body);
			rp->body = NULL;
			rp->len = 0;
			rp->status = f->status;
			rp->generated = f->body_bytes;
			rp->chunked = f->chunked;
			decided = true;
			break;
		case FAULT_REDIRECT:
			reply_raw(rp, f->status, f->body ? f->body : "", f->body_len);
			free(rp->location);
			rp->location = xstrdup(f->location);
			rp->bare = f->body == NULL;
			decided = true;
			break;
		case FAULT_RESET:
			rp->reset = true;
			decided = true;
			break;
		case FAULT_EVERY_429:
			reply_too_many(rp, f->retry_after >= 0 ? f->retry_after : 1);
			decided = true;
			break;
		case FAULT_STREAM:
			rp->stream = f->stream;
			break;
		}
		if (f->remaining > 0 && --f->remaining == 0) {
			free(f->body);
			free(f->location);
			free(f->workspace_id);
			memmove(f, f + 1, (platform.nfaults - i - 1) * sizeof *f);
			platform.nfaults--;
			i--;
		}
	}
	return decided;
}


bool endpoint_from_name(const char *name, enum endpoint *ep)
{
	for (int e = EP_REGISTER; e < EP_OTHER; e++)
		if (strcmp(name, endpoint_names[e]) == 0) {
			*ep = (enum endpoint)e;
			return true;
		}
	return false;
}

/* Reads an optional number field in 0..max; false when it is present but not such a number. */
static bool optional_number(jv spec, const char *key, double max, double *out)
{
	if (!json_has(spec, key))
		return true;
	return field_num(spec, key, out) && *out >= 0 && *out <= max;
}

/* The same for a whole number. */
static bool optional_count(jv spec, const char *key, double max, double *out)
{
	return optional_number(spec, key, max, out) &&
	       (!json_has(spec, key) || is_integer(*out));
}

/*
 * Reads the event-stream fields of a fault spec into f->stream; *any tells whether
 * there were any. False when one is malformed.
 */
static bool stream_fields(jv spec, struct fault *f, bool *any)
{
	double events = -1, ms = -1, drop = 0;
	jv_kind replica = field_kind(spec, "other_replica");

	*any = json_has(spec, "end_after_events") || json_has(spec, "end_after_ms") ||
	       json_has(spec, "drop_ratio") || replica != JV_KIND_INVALID;
	f->stream = (struct stream_opts){ .end_after_events = -1, .end_after_ms = -1 };
	if (!optional_count(spec, "end_after_events", 1e9, &events) ||
	    !optional_count(spec, "end_after_ms", 36e5, &ms) ||
	    !optional_number(spec, "drop_ratio", 1, &drop) ||
	    (replica != JV_KIND_INVALID && replica != JV_KIND_TRUE && replica != JV_KIND_FALSE))
		return false;
	f->stream = (struct stream_opts){
		.end_after_events = (long)events, .end_after_ms = (long)ms, .drop_ratio = drop,
		.other_replica = replica == JV_KIND_TRUE,
	};
	return true;
}

/* The body of an injected failure: the given one, or what the platform says for its status. */
static char *fail_body(jv spec, unsigned status, size_t *len)
{
	jv body = json_field(spec, "body");
	if (jv_get_kind(body) == JV_KIND_STRING) {
		char *s = xstrdup(jv_string_value(body));
		*len = strlen(s);
		jv_free(body);
		return s;
	}
	if (!json_has(spec, "body")) {
		jv_free(body);
		body = jv_object_set(jv_object(), jv_string("error"), jv_string("injected"));
		if (status == 503) {
			body = jv_object_set(body, jv_string("error"),
					     jv_string("platform datastore unavailable, retry shortly"));
			body = jv_object_set(body, jv_string("code"), jv_string("platform_unavailable"));
		}
	}
	return json_dump(body, len);
}

/*
 * POST /_control/faults: adds a fault, applied to the platform requests of one endpoint
 * (register, heartbeat, activity, ack, a2a, notify, workspace, events, upload,
 * upload_ack, health, or "*" for all) in the order faults were added; the first that
 * answers decides, delays add up. Fields:
 *   workspace_id ID only requests whose path names that workspace (the target of a2a)
 *   status N        the answer's status (503 by default; 200 for raw answers, 302 for
 *                   redirects)
 *   body X          the answer's body: a string verbatim, anything else as JSON
 *                   ({"error":"injected"} by default, and the platform's datastore
 *                   answer {"error":...,"code":"platform_unavailable"} for a 503)
 *   retry_after N   adds Retry-After: N
 *   fail_next N     hits the next N matching requests only; fail_ratio R hits each one
 *                   with chance R (default: every one, for ever)
 *   reset_next N / reset_ratio R
 *                   closes the connection without an answer
 *   delay_ms N      holds the answer that long (alone: the real answer, delayed)
 *   every_429 N     answers every Nth matching request with 429
 *   next N          how many requests a fault hits, for the kinds without a count
 *   raw S           answers exactly the text S
 *   raw_base64 S    answers exactly the bytes S decodes to (invalid UTF-8, NUL bytes)
 *   body_bytes N    answers N bytes of a JSON array holding one long string, made up
 *                   while it is sent (never held in memory); "chunked": true leaves out
 *                   Content-Length
 *   dribble_ms N    sends the answer's body (whichever it is) one byte every N ms
 *   redirect URL    answers a redirect (status 302 unless given) with Location: URL and
 *                   no body unless given
 * raw, raw_base64, body_bytes and redirect exclude each other. On the events endpoint,
 * these make the next stream (or "next" streams) misbehave instead of answering:
 *   end_after_events N  the stream ends once N events went out
 *   end_after_ms N      the stream ends N ms after it opened
 *   drop_ratio R        each event is dropped with chance R (1: all of them)
 *   other_replica true  the stream is served by another replica: none of this
 *                       workspace's events reach it
 */
void faults_add(jv spec, struct reply *rp)
{
	const char *name = field_str(spec, "endpoint"), *raw = field_str(spec, "raw");
	const char *raw_base64 = field_str(spec, "raw_base64");
	const char *redirect = field_str(spec, "redirect");
	struct fault f = { .retry_after = -1, .remaining = -1, .ratio = 1.0, .status = 503 };
	double status = 503, retry_after = -1, fail_next = 0, fail_ratio = -1, reset_next = 0;
	double reset_ratio = -1, delay_ms = 0, every = 0, next = 0, dribble_ms = 0;
	double body_bytes = 0;
	bool has_body = json_has(spec, "body");
	bool has_status = json_has(spec, "status");
	jv_kind chunked = field_kind(spec, "chunked");
	char *decoded = NULL;
	size_t decoded_len = 0;
	const char *workspace_id = field_str(spec, "workspace_id");
	int answers = (raw != NULL) + (raw_base64 != NULL) + (redirect != NULL) +
		      json_has(spec, "body_bytes");
	bool stream;

	if (!name || !(strcmp(name, "*") == 0 || endpoint_from_name(name, &f.endpoint)) ||
	    !optional_count(spec, "status", 599, &status) ||
	    !optional_count(spec, "retry_after", 1e6, &retry_after) ||
	    !optional_count(spec, "fail_next", 1e9, &fail_next) ||
	    !optional_number(spec, "fail_ratio", 1, &fail_ratio) ||
	    !optional_count(spec, "reset_next", 1e9, &reset_next) ||
	    !optional_number(spec, "reset_ratio", 1, &reset_ratio) ||
	    !optional_count(spec, "delay_ms", 36e5, &delay_ms) ||
	    !optional_count(spec, "dribble_ms", 6e4, &dribble_ms) ||
	    !optional_count(spec, "body_bytes", 1e12, &body_bytes) ||
	    !optional_count(spec, "every_429", 1e9, &every) ||
	    !optional_count(spec, "next", 1e9, &next) || status < 100 ||
	    (json_has(spec, "raw") && !raw) ||
	    (json_has(spec, "raw_base64") &&
	     (!raw_base64 || !base64_decode(raw_base64, &decoded, &decoded_len))) ||
	    (json_has(spec, "redirect") && (!redirect || !*redirect)) ||
	    (json_has(spec, "body_bytes") && body_bytes < 4) ||
	    (chunked != JV_KIND_INVALID && chunked != JV_KIND_TRUE && chunked != JV_KIND_FALSE) ||
	    (json_has(spec, "workspace_id") && (!workspace_id || !*workspace_id)) ||
	    !stream_fields(spec, &f, &stream) ||
	    (stream && (f.endpoint != EP_EVENTS || strcmp(name, "*") == 0 || answers > 0 ||
			has_status || has_body || fail_next > 0 || fail_ratio >= 0 ||
			reset_next > 0 || reset_ratio >= 0 || every > 0)) ||
	    answers > 1) {
		free(decoded);
		reply_error(rp, 400, "invalid fault");
		return;
	}
	/* "fail_next": 0 and the like hit no request at all. */
	static const char *const counts[] = { "fail_next", "reset_next", "next" };
	for (size_t i = 0; i < sizeof counts / sizeof *counts; i++) {
		double n;
		if (field_num(spec, counts[i], &n) && n == 0) {
			free(decoded);
			reply_ok(rp);
			return;
		}
	}
	f.any_endpoint = strcmp(name, "*") == 0;
	f.workspace_id = workspace_id ? xstrdup(workspace_id) : NULL;
	f.status = (unsigned)status;
	f.retry_after = (long)retry_after;
	f.delay_ms = (unsigned)delay_ms;
	f.dribble_ms = (unsigned)dribble_ms;

	bool reset = reset_next > 0 || reset_ratio >= 0;
	if (reset) {
		f.action = FAULT_RESET;
	} else if (raw || raw_base64) {
		f.action = FAULT_RAW;
		if (!has_status)
			f.status = 200;
		if (raw) {
			f.body = xstrdup(raw);
			f.body_len = strlen(raw);
		} else {
			f.body = decoded;
			f.body_len = decoded_len;
			decoded = NULL;
		}
	} else if (body_bytes > 0) {
		f.action = FAULT_GENERATED;
		if (!has_status)
			f.status = 200;
		f.body_bytes = (uint64_t)body_bytes;
		f.chunked = chunked == JV_KIND_TRUE;
	} else if (redirect) {
		f.action = FAULT_REDIRECT;
		if (!has_status)
			f.status = 302;
		f.location = xstrdup(redirect);
		if (field_kind(spec, "body") == JV_KIND_STRING) {
			f.body = xstrdup(field_str(spec, "body"));
			f.body_len = strlen(f.body);
		} else if (has_body) {
			f.body = json_dump(json_field(spec, "body"), &f.body_len);
		}
	} else if (stream) {
		f.action = FAULT_STREAM;
	} else if (every > 0) {
		f.action = FAULT_EVERY_429;
		f.every = (unsigned long)every;
	} else if (fail_next > 0 || fail_ratio >= 0 || has_body || retry_after >= 0 || has_status) {
		f.action = FAULT_FAIL;
		f.body = fail_body(spec, f.status, &f.body_len);
	} else {
		f.action = FAULT_DELAY;
	}
	free(decoded);
	/* How many matching requests it hits, and how likely each one is hit. */
	double count = next > 0 ? next : reset ? reset_next : fail_next;
	double ratio = reset ? reset_ratio : fail_ratio;
	f.remaining = count > 0 ? (long)count : -1;
	f.ratio = ratio >= 0 ? ratio : 1.0;

	GROW(platform.faults, platform.faults_cap, platform.nfaults);
	platform.faults[platform.nfaults++] = f;
	reply_ok(rp);
}

void faults_clear(void)
{
	for (size_t i = 0; i < platform.nfaults; i++) {
		free(platform.faults[i].body);
		free(platform.faults[i].location);
		free(platform.faults[i].workspace_id);
	}
	platform.nfaults = 0;
}
