/* uploads.c: files a person uploaded in the canvas, waiting for a poll-mode workspace to fetch and acknowledge them. */
#include <config.h>

#include <stdlib.h>
#include <string.h>

#include "fake.h"

/* The upload with this id, in any workspace; *owner is whose it is. */
static struct upload *upload_find(const char *file_id, struct workspace **owner)
{
	for (size_t i = 0; i < platform.nws; i++) {
		struct workspace *w = platform.ws[i];
		for (size_t j = 0; j < w->nuploads; j++)
			if (strcmp(w->uploads[j].file_id, file_id) == 0) {
				*owner = w;
				return &w->uploads[j];
			}
	}
	return NULL;
}

/* Unacked uploads expire; an acked one stays readable (the canvas still shows it). */
static bool upload_expired(const struct upload *u)
{
	return !u->acked && now_ms() >= u->expires_ms;
}

/*
 * The caller's upload with this id; answers and returns NULL when it is not there:
 * 400 for an id that is no UUID, 404 when unknown, expired or another workspace's.
 */
static struct upload *upload_of(struct MHD_Connection *c, const char *id, const char *file_id,
				const char *not_found, struct reply *rp)
{
	struct workspace *w = ws_find(id), *owner = NULL;
	if (!authorised(c, w, rp))
		return NULL;
	if (!uuid_valid(file_id)) {
		reply_error(rp, 400, "invalid file_id");
		return NULL;
	}
	struct upload *u = upload_find(file_id, &owner);
	if (u && owner != w) {
		reply_error(rp, 404, "pending upload not found");
		return NULL;
	}
	if (!u || upload_expired(u)) {
		reply_error(rp, 404, not_found);
		return NULL;
	}
	return u;
}

/* GET /workspaces/<id>/pending-uploads/<file_id>/content: the bytes, as uploaded. */
void api_upload_content(struct MHD_Connection *c, const char *id, const char *file_id,
			struct reply *rp)
{
	struct upload *u = upload_of(c, id, file_id, "pending upload not found or expired", rp);
	if (!u)
		return;
	u->fetched++;
	free(rp->body);
	rp->body = NULL;
	rp->len = 0;
	rp->status = 200;
	rp->content_type = xstrdup(u->mime_type);
	/* A name with a quote or a control character would break the header: replace them. */
	char *name = xstrdup(u->name);
	for (char *p = name; *p; p++)
		if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20)
			*p = '_';
	rp->disposition = xasprintf("attachment; filename=\"%s\"", name);
	free(name);
	if (u->data) {
		rp->body = bytes_dup(u->data, (size_t)u->size);
		rp->len = (size_t)u->size;
	} else {
		rp->generated = u->size;
		rp->pattern = true;
	}
}

/* POST /workspaces/<id>/pending-uploads/<file_id>/ack: idempotent. */
void api_upload_ack(struct MHD_Connection *c, const char *id, const char *file_id,
		    struct reply *rp)
{
	struct upload *u = upload_of(c, id, file_id,
				     "pending upload not found, expired, or already acked", rp);
	if (!u)
		return;
	u->acked = true;
	reply_json(rp, 200, jv_object_set(jv_object(), jv_string("acked"), jv_true()));
}

/* The content of a new upload: given inline (text or base64), or a size to make up. */
static bool upload_content(jv spec, struct upload *u)
{
	const char *text = field_str(spec, "content"), *b64 = field_str(spec, "content_base64");
	double size;
	int given = (text != NULL) + (b64 != NULL) + json_has(spec, "size");

	if (given != 1)
		return false;
	if (text) {
		u->size = strlen(text);
		u->data = xstrdup(text);
		return true;
	}
	if (b64) {
		size_t n;
		if (!base64_decode(b64, &u->data, &n))
			return false;
		u->size = n;
		return true;
	}
	if (!field_num(spec, "size", &size) || !is_integer(size) || size < 0 || size > UPLOAD_MAX)
		return false;
	u->size = (uint64_t)size;
	return true;
}

/*
 * POST /_control/uploads: a file a person uploaded in the canvas for workspace_id,
 * and (unless "no_row") the chat_upload_receive row that tells the workspace.
 */
void ctl_upload_create(jv spec, struct reply *rp)
{
	const char *ws_id = field_str(spec, "workspace_id"), *file_id = field_str(spec, "file_id");
	const char *name = field_str(spec, "name"), *mime = field_str(spec, "mime_type");
	struct workspace *w = ws_id ? ws_find(ws_id) : NULL, *owner;
	struct upload u = { 0 };

	if (!w) {
		reply_error(rp, 404, "workspace not found");
		return;
	}
	if ((file_id && (!uuid_valid(file_id) || upload_find(file_id, &owner))) ||
	    (json_has(spec, "name") && (!name || !*name)) ||
	    (json_has(spec, "mime_type") && (!mime || !*mime)) || !upload_content(spec, &u)) {
		free(u.data);
		reply_error(rp, 400, "one of content, content_base64 or size (at most 100 MB) is "
				     "required; file_id must be a new UUID, name and mime_type strings");
		return;
	}
	if (file_id)
		snprintf(u.file_id, sizeof u.file_id, "%s", file_id);
	else
		uuid_new(u.file_id);
	u.name = xstrdup(name ? name : "upload.bin");
	u.mime_type = xstrdup(mime ? mime : "application/octet-stream");
	u.expires_ms = now_ms() + platform.upload_ttl_ms;
	GROW(w->uploads, w->uploads_cap, w->nuploads);
	w->uploads[w->nuploads++] = u;

	char *uri = xasprintf("platform-pending:%s/%s", w->id, u.file_id);
	jv o = jv_object_set(jv_object(), jv_string("file_id"), jv_string(u.file_id));
	o = jv_object_set(o, jv_string("uri"), jv_string(uri));
	if (!field_true(spec, "no_row")) {
		jv manifest = jv_object_set(jv_object(), jv_string("file_id"), jv_string(u.file_id));
		manifest = jv_object_set(manifest, jv_string("name"), jv_string(u.name));
		manifest = jv_object_set(manifest, jv_string("mimeType"), jv_string(u.mime_type));
		manifest = jv_object_set(manifest, jv_string("size"), jv_number((double)u.size));
		manifest = jv_object_set(manifest, jv_string("uri"), jv_string(uri));
		struct row *r = row_add(w, NULL, "chat_upload_receive", manifest, -1);
		o = jv_object_set(o, jv_string("row_id"), jv_string(r->id));
	}
	free(uri);
	reply_json(rp, 200, o);
}

/* GET /_control/uploads?workspace_id=ID: the workspace's uploads and what became of them. */
void ctl_uploads_list(struct MHD_Connection *c, struct reply *rp)
{
	const char *id = query(c, "workspace_id");
	struct workspace *w = id ? ws_find(id) : NULL;
	if (!w) {
		reply_error(rp, 404, "workspace not found");
		return;
	}
	jv out = jv_array();
	for (size_t i = 0; i < w->nuploads; i++) {
		const struct upload *u = &w->uploads[i];
		jv o = jv_object_set(jv_object(), jv_string("file_id"), jv_string(u->file_id));
		o = jv_object_set(o, jv_string("name"), jv_string(u->name));
		o = jv_object_set(o, jv_string("mime_type"), jv_string(u->mime_type));
		o = jv_object_set(o, jv_string("size"), jv_number((double)u->size));
		o = jv_object_set(o, jv_string("fetched"), jv_number(u->fetched));
		o = jv_object_set(o, jv_string("acked"), jv_bool(u->acked));
		o = jv_object_set(o, jv_string("expired"), jv_bool(upload_expired(u)));
		out = jv_array_append(out, o);
	}
	reply_json(rp, 200, out);
}

/* POST /_control/uploads/<file_id>/expire: its time is up now. */
void ctl_upload_expire(const char *file_id, struct reply *rp)
{
	struct workspace *owner;
	struct upload *u = upload_find(file_id, &owner);
	if (!u) {
		reply_error(rp, 404, "upload not found");
		return;
	}
	u->expires_ms = now_ms();
	reply_ok(rp);
}

void uploads_free(struct workspace *w)
{
	for (size_t i = 0; i < w->nuploads; i++) {
		free(w->uploads[i].name);
		free(w->uploads[i].mime_type);
		free(w->uploads[i].data);
	}
	free(w->uploads);
}
