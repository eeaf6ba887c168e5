/* activity.c: reading a workspace's own activity (cursor, order, filters, peer info) and acknowledging it. */
#include <config.h>

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "fake.h"

/* The attachment a file part (or a flat upload manifest) describes, or an invalid jv. */
static jv attachment(const char *kind, jv file)
{
	const char *uri = field_str(file, "uri"), *name = field_str(file, "name");
	const char *mime = field_str(file, "mime_type");
	if (!mime)
		mime = field_str(file, "mimeType");
	if ((!uri || !*uri) && (!name || !*name))
		return jv_invalid();
	jv a = jv_object_set(jv_object(), jv_string("kind"), jv_string(kind));
	if (uri && *uri)
		a = jv_object_set(a, jv_string("uri"), jv_string(uri));
	if (mime && *mime)
		a = jv_object_set(a, jv_string("mime_type"), jv_string(mime));
	if (name && *name)
		a = jv_object_set(a, jv_string("name"), jv_string(name));
	return a;
}

/* The file-like parts of params.message.parts; "kind" or, in older rows, "type". */
static jv part_attachments(jv body)
{
	jv params = json_field(body, "params"), message = json_field(params, "message");
	jv parts = json_field(message, "parts"), out = jv_array();
	static const char *const kinds[] = { "file", "image", "audio", "video" };

	jv_free(params);
	jv_free(message);
	if (jv_get_kind(parts) != JV_KIND_ARRAY) {
		jv_free(parts);
		return out;
	}
	jv_array_foreach(parts, i, part) {
		const char *kind = field_str(part, "kind");
		if (!kind || !*kind)
			kind = field_str(part, "type");
		for (size_t k = 0; kind && k < sizeof kinds / sizeof *kinds; k++) {
			if (strcmp(kind, kinds[k]) != 0)
				continue;
			jv file = json_field(part, "file");
			jv a = attachment(kind, jv_get_kind(file) == JV_KIND_OBJECT ? file : part);
			if (jv_is_valid(a))
				out = jv_array_append(out, a);
			else
				jv_free(a);
			jv_free(file);
		}
		jv_free(part);
	}
	jv_free(parts);
	return out;
}

/* A canvas upload row's body is the manifest itself; its kind follows the MIME type. */
static jv manifest_attachment(jv body)
{
	const char *mime = field_str(body, "mimeType");
	if (!mime)
		mime = field_str(body, "mime_type");
	if (!field_str(body, "uri") && !field_str(body, "file_id"))
		return jv_invalid();
	const char *kind = !mime ? "file"
		: strncmp(mime, "image/", 6) == 0 ? "image"
		: strncmp(mime, "audio/", 6) == 0 ? "audio"
		: strncmp(mime, "video/", 6) == 0 ? "video" : "file";
	return attachment(kind, body);
}

char *row_attachments(jv request_body)
{
	jv list = part_attachments(request_body);
	if (jv_array_length(jv_copy(list)) == 0) {
		jv a = manifest_attachment(request_body);
		if (jv_is_valid(a))
			list = jv_array_append(list, a);
		else
			jv_free(a);
	}
	if (jv_array_length(jv_copy(list)) == 0) {
		jv_free(list);
		return NULL;
	}
	return json_dump(list, NULL);
}

/* What include=peer_info adds: who sent the row, where its card is, what it attaches. */
static void append_peer_info(struct buf *b, const struct row *r, const char *host)
{
	const struct workspace *peer = r->source_id ? ws_find(r->source_id) : NULL;
	jv extra = jv_object();

	if (peer && peer->name && *peer->name)
		extra = jv_object_set(extra, jv_string("peer_name"), jv_string(peer->name));
	if (peer && peer->role && *peer->role)
		extra = jv_object_set(extra, jv_string("peer_role"), jv_string(peer->role));
	if (r->source_id && host) {
		char *url = xasprintf("http://%s/registry/discover/%s", host, r->source_id);
		extra = jv_object_set(extra, jv_string("agent_card_url"), jv_string(url));
		free(url);
	}
	size_t len;
	char *fields = json_dump(extra, &len);
	/* The row without its closing brace, the extra fields, the attachments, the brace. */
	buf_append(b, r->json, r->json_len - 1);
	if (len > 2) {
		buf_append(b, ",", 1);
		buf_append(b, fields + 1, len - 2);
	}
	if (r->attachments) {
		buf_append(b, ",\"attachments\":", 15);
		buf_append(b, r->attachments, strlen(r->attachments));
	}
	buf_append(b, "}", 1);
	free(fields);
}

/* The query's filters, parsed and checked. */
struct activity_query {
	bool none;                      /* a type this platform never stores */
	long limit;
	int64_t cutoff_ns, before_ns;   /* since_secs and before_ts; INT64_MIN/MAX: none */
	const char *source, *peer_id;
	bool peer_info;
	const char *host;
};

static bool row_wanted(const struct activity_query *q, const struct workspace *w,
		       const struct row *r)
{
	if (r->created_ns < q->cutoff_ns || r->created_ns >= q->before_ns)
		return false;
	if (q->source && (strcmp(q->source, "canvas") == 0) != (r->source_id == NULL))
		return false;
	return !q->peer_id || strcmp(q->peer_id, w->id) == 0 ||
	       (r->source_id && strcmp(q->peer_id, r->source_id) == 0);
}

/* include is a comma-separated list; blanks around an entry are allowed. */
static bool include_flag(const char *include, const char *flag)
{
	size_t n = strlen(flag);
	while (include && *include) {
		const char *end = strchr(include, ',');
		size_t len = end ? (size_t)(end - include) : strlen(include);
		const char *p = include;
		for (; len && (*p == ' ' || *p == '\t'); len--)
			p++;
		while (len && (p[len - 1] == ' ' || p[len - 1] == '\t'))
			len--;
		if (len == n && strncmp(p, flag, n) == 0)
			return true;
		include = end ? end + 1 : NULL;
	}
	return false;
}

/* Reads the query into q; answers 400 and returns false when a value is bad. */
static bool activity_query_parse(struct MHD_Connection *c, struct activity_query *q,
				 struct reply *rp)
{
	const char *type = query(c, "type"), *since_secs = query(c, "since_secs");
	const char *before = query(c, "before_ts");
	long secs;

	*q = (struct activity_query){
		.none = type && strcmp(type, "a2a_receive") != 0, .cutoff_ns = INT64_MIN,
		.before_ns = INT64_MAX, .source = query(c, "source"), .peer_id = query(c, "peer_id"),
		.peer_info = include_flag(query(c, "include"), "peer_info"), .host = header(c, "Host"),
	};
	if (parse_long(query(c, "limit"), 1, LONG_MAX, &q->limit) != 0)
		q->limit = LIMIT_DEFAULT;
	if (q->limit > LIMIT_MAX)
		q->limit = LIMIT_MAX;
	if (q->peer_id && !uuid_valid(q->peer_id)) {
		reply_error(rp, 400, "peer_id must be a UUID");
		return false;
	}
	if (before && !parse_rfc3339(before, &q->before_ns)) {
		reply_error(rp, 400, "before_ts must be an RFC3339 timestamp (e.g. 2026-05-01T00:00:00Z)");
		return false;
	}
	if (since_secs) {
		if (parse_long(since_secs, 1, LONG_MAX, &secs) != 0) {
			reply_error(rp, 400, "since_secs must be a positive integer");
			return false;
		}
		if (secs > SINCE_SECS_MAX)
			secs = SINCE_SECS_MAX;
		q->cutoff_ns = wall_ns() - (int64_t)secs * 1000000000;
	}
	return true;
}

/*
 * GET /workspaces/<id>/activity. With since_id: the rows after the cursor in
 * (created_at, seq) order, oldest first; without: newest first. Every filter applies
 * to both.
 */
void api_activity(struct MHD_Connection *c, const char *id, struct reply *rp)
{
	struct workspace *w = ws_find(id);
	const char *since_id = query(c, "since_id");
	struct activity_query q;
	long at = -1;

	if (!authorised(c, w, rp) || !activity_query_parse(c, &q, rp))
		return;
	if (since_id) {
		/* The platform's database refuses a cursor that is no UUID at all. */
		if (!uuid_valid(since_id)) {
			reply_error(rp, 500, "cursor lookup failed");
			return;
		}
		at = rows_find(w, since_id);
		if (at < 0) {
			reply_error(rp, 410, "since_id cursor not found (row may have been pruned or "
					     "belongs to a different workspace); omit since_id to reset");
			return;
		}
	}
	if (q.source && strcmp(q.source, "canvas") != 0 && strcmp(q.source, "agent") != 0) {
		reply_error(rp, 400, "source must be 'canvas' or 'agent'");
		return;
	}
	/* Newest first starts below before_ts; both directions stop at the time bound. */
	long step = since_id ? 1 : -1, n = 0;
	long from = since_id ? at + 1
		: q.before_ns == INT64_MAX ? (long)w->nrows - 1
		: (long)rows_upper_bound(w, q.before_ns - 1, UINT64_MAX) - 1;
	struct buf b = { 0 };
	buf_append(&b, "[", 1);
	for (long i = from; !q.none && i >= 0 && i < (long)w->nrows && n < q.limit; i += step) {
		const struct row *r = w->rows[i];
		if ((step > 0 && r->created_ns >= q.before_ns) ||
		    (step < 0 && r->created_ns < q.cutoff_ns))
			break;
		if (!row_wanted(&q, w, r))
			continue;
		if (n++)
			buf_append(&b, ",", 1);
		if (q.peer_info)
			append_peer_info(&b, r, q.host);
		else
			buf_append(&b, r->json, r->json_len);
	}
	buf_append(&b, "]", 1);
	free(rp->body);
	rp->status = 200;
	rp->body = b.p;
	rp->len = b.len;
}

/* POST /workspaces/<id>/activity/ack: the acked seq only ever moves forward. */
void api_ack(struct MHD_Connection *c, const char *id, jv body, struct reply *rp)
{
	struct workspace *w = ws_find(id);
	double seq;

	if (!authorised(c, w, rp))
		return;
	if (!field_num(body, "acked_seq", &seq) || !is_integer(seq)) {
		reply_error(rp, 400, "acked_seq is required");
		return;
	}
	if (seq < 0) {
		reply_error(rp, 400, "acked_seq must be >= 0");
		return;
	}
	if ((int64_t)seq > w->last_acked_seq)
		w->last_acked_seq = (int64_t)seq;
	reply_json(rp, 200, jv_object_set(jv_object(), jv_string("last_acked_seq"),
					  jv_number((double)w->last_acked_seq)));
}
