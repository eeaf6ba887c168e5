/* uploads.c: canvas uploads: fetched (streamed) into the state directory, acknowledged, their messages completed. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "uploads.h"
#include "bridge.h"
#include "http.h"
#include "inbox.h"
#include "json.h"
#include "log.h"
#include "platform.h"
#include "rows.h"
#include "util.h"

enum upload_stage {
	UP_WAITING,   /* to be fetched at next_at */
	UP_FETCHING,
	UP_ACKING,    /* stored; its message has it; the platform is told */
};

struct upload {
	struct upload *next, *prev;
	struct bridge *b;
	struct message *m;        /* the message waiting for this file; NULL once it has it */
	enum upload_stage stage;
	char file_id[UUID_LEN + 1];
	char *name;               /* as the platform gave it, for the message and the log */
	char *mime;
	int64_t size;             /* as announced, -1: unknown */
	char *path, *tmp;         /* where it goes, and where it comes in */
	int fd;                   /* the temporary file while fetching, else -1 */
	int64_t got;
	bool too_large;           /* passed --max-file-size while coming in */
	int write_errno;          /* storing failed with this */
	int attempts;
	int64_t next_at;
	struct http_req *req;
};

/* ---- names ------------------------------------------------------------ */

char *uploads_file_name(const char *file_id, const char *name)
{
	if (!name || !*name)
		name = "upload";
	size_t n = strlen(name);
	if (n > UPLOADS_NAME_MAX) {
		n = UPLOADS_NAME_MAX;
		while (n > 0 && ((unsigned char)name[n] & 0xC0) == 0x80)
			n--;
	}
	char *out = xasprintf("%s-%.*s", file_id, (int)n, name);
	char *p = out + strlen(file_id) + 1;
	if (*p == '.')
		*p = '_';
	for (; *p; p++)
		if (*p == '/' || (unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '_';
	return out;
}

/* ---- the records ------------------------------------------------------ */

static void record_free(struct upload *u)
{
	struct uploads *up = &u->b->up;
	if (u->prev)
		u->prev->next = u->next;
	else
		up->list = u->next;
	if (u->next)
		u->next->prev = u->prev;
	if (u->req)
		http_cancel(u->b->h, u->req);
	if (u->fd >= 0) {
		close(u->fd);
		unlink(u->tmp);
	}
	if (u->m)
		u->m->upload = NULL;
	free(u->name);
	free(u->mime);
	free(u->path);
	free(u->tmp);
	free(u);
}

/* The name to show: the platform's, or the file id. */
static const char *shown(const struct upload *u)
{
	return u->name ? u->name : u->file_id;
}

/* The message has what it gets (file: its entry, or invalid for none; note: a
 * line added to its text, or NULL) and may be handed out. */
static void complete(struct bridge *b, struct message *m, jv file, const char *note)
{
	if (jv_is_valid(file))
		m->line = jv_object_set(m->line, jv_string("files"), jv_array_append(jv_array(), file));
	else
		jv_free(file);
	if (note) {
		jv text = json_field(m->line, "text");
		bool empty = jv_get_kind(text) != JV_KIND_STRING || jv_string_length_bytes(jv_copy(text)) == 0;
		jv joined = empty ? jv_string(note) : jv_string_fmt("%s\n%s", jv_string_value(text), note);
		jv_free(text);
		m->line = jv_object_set(m->line, jv_string("text"), joined);
	}
	m->upload = NULL;
	inbox_upload_ready(b->ib, m);
}

static jv file_entry(const struct upload *u, int64_t size)
{
	jv f = jv_object();
	f = jv_object_set(f, jv_string("name"), u->name ? jv_string(u->name) : jv_null());
	f = jv_object_set(f, jv_string("mime_type"), jv_string(u->mime));
	f = jv_object_set(f, jv_string("size"), jv_number((double)size));
	f = jv_object_set(f, jv_string("path"), jv_string(u->path));
	return f;
}

/* Handed out without the file: said once in the log and in the text. */
static void give_up(struct upload *u, const char *why)
{
	char *note = xasprintf("(the uploaded file \"%s\" was not fetched: %s)", shown(u), why);
	log_warn("upload %s (%s) not fetched: %s; its message is handed out without it", shown(u), u->file_id, why);
	complete(u->b, u->m, jv_invalid(), note);
	u->m = NULL;
	free(note);
	record_free(u);
}

/* ---- acknowledging ---------------------------------------------------- */

static void on_acked(void *ctx, const struct http_resp *r)
{
	struct upload *u = ctx;
	u->req = NULL;
	if (r->status < 200 || r->status >= 300) {
		char *why = platform_describe(r);
		log_warn("acknowledging upload %s (%s) failed (%s); the file is stored", shown(u), u->file_id, why);
		free(why);
	}
	record_free(u);
}

/* The file is at u->path (size bytes): its message has it, the platform is told. */
static void stored(struct upload *u, int64_t size)
{
	complete(u->b, u->m, file_entry(u, size), NULL);
	u->m = NULL;
	u->stage = UP_ACKING;
	char *path = xasprintf("/workspaces/%s/pending-uploads/%s/ack", u->b->s->workspace_id, u->file_id);
	struct http_opts o = {
		.method = "POST", .path = path, .body = "{}", .body_len = 2,
		.max_attempts = 0, .done = on_acked, .ctx = u,
	};
	u->req = http_start(u->b->h, &o);
	free(path);
}

/* ---- fetching --------------------------------------------------------- */

static bool sink(void *ctx, const char *data, size_t n)
{
	struct upload *u = ctx;
	if (u->got + (int64_t)n > u->b->s->max_file_size) {
		u->too_large = true;
		return false;
	}
	while (n > 0) {
		ssize_t w = write(u->fd, data, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			u->write_errno = w < 0 ? errno : EIO;
			return false;
		}
		data += w;
		n -= (size_t)w;
		u->got += w;
	}
	return true;
}

static void retry_later(struct upload *u, const char *why)
{
	u->stage = UP_WAITING;
	u->attempts++;
	u->next_at = now_ms() + backoff_ms(u->attempts, 1000, 60000);
	if (u->attempts == 1 || u->attempts % 10 == 0)
		log_warn("fetching upload %s (%s) failed (%s), attempt %d; trying again", shown(u), u->file_id, why,
			 u->attempts);
}

/* The temporary file, synced and renamed into place. 0, or an errno. */
static int keep(struct upload *u)
{
	int e = fsync(u->fd) < 0 ? errno : 0;
	if (close(u->fd) < 0 && !e)
		e = errno;
	u->fd = -1;
	if (!e && rename(u->tmp, u->path) < 0)
		e = errno;
	if (e)
		unlink(u->tmp);
	return e;
}

static void on_fetched(void *ctx, const struct http_resp *r)
{
	struct upload *u = ctx;
	u->req = NULL;
	bool ok = r->status >= 200 && r->status < 300 && !u->too_large && !u->write_errno;
	int e = ok ? keep(u) : 0;
	if (ok && !e) {
		stored(u, u->got);
		return;
	}
	if (u->fd >= 0) {
		close(u->fd);
		u->fd = -1;
		unlink(u->tmp);
	}
	if (u->too_large) {
		char *why = xasprintf("larger than --max-file-size (%ld bytes)", u->b->s->max_file_size);
		give_up(u, why);
		free(why);
	} else if (u->write_errno || e) {
		char *why = xasprintf("cannot store it in %s: %s", u->path, strerror(u->write_errno ? u->write_errno : e));
		retry_later(u, why);
		free(why);
	} else if (r->status == 404) {
		give_up(u, "it expired on the platform (HTTP 404)");
	} else if (http_transient(r) || r->status == 401) {
		char *why = platform_describe(r);
		retry_later(u, why);
		free(why);
	} else {
		char *why = platform_describe(r);
		char *full = xasprintf("the platform refused it (%s)", why);
		give_up(u, full);
		free(full);
		free(why);
	}
}

/* <state-dir>/<workspace-id>/files, created 0700 with its parent, as an
 * absolute path so a handler finds it from anywhere. NULL with errno set. */
static char *files_dir(const struct settings *s)
{
	char *ws = xasprintf("%s/%s", s->state_dir, s->workspace_id);
	char *dir = xasprintf("%s/files", ws);
	char *abs = NULL;
	if ((mkdir(ws, 0700) == 0 || errno == EEXIST) && (mkdir(dir, 0700) == 0 || errno == EEXIST))
		abs = realpath(dir, NULL);
	free(ws);
	free(dir);
	return abs;
}

/* Where the file goes, once its directory is there. false with errno set. */
static bool place(struct upload *u)
{
	if (u->path)
		return true;
	char *dir = files_dir(u->b->s);
	if (!dir)
		return false;
	char *name = uploads_file_name(u->file_id, u->name);
	u->path = xasprintf("%s/%s", dir, name);
	u->tmp = xasprintf("%s/.%s.part", dir, u->file_id);
	free(name);
	free(dir);
	return true;
}

static void start_fetch(struct upload *u)
{
	if (!place(u)) {
		char *why = xasprintf("cannot create %s/%s/files: %s", u->b->s->state_dir, u->b->s->workspace_id,
				      strerror(errno));
		retry_later(u, why);
		free(why);
		return;
	}
	u->got = 0;
	u->too_large = false;
	u->write_errno = 0;
	u->fd = open(u->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (u->fd < 0) {
		char *why = xasprintf("cannot create %s: %s", u->tmp, strerror(errno));
		retry_later(u, why);
		free(why);
		return;
	}
	char *path = xasprintf("/workspaces/%s/pending-uploads/%s/content", u->b->s->workspace_id, u->file_id);
	struct http_opts o = {
		.method = "GET", .path = path, .max_attempts = 1, .sink = sink, .done = on_fetched, .ctx = u,
	};
	u->stage = UP_FETCHING;
	u->req = http_start(u->b->h, &o);
	free(path);
}

/* ---- new uploads ------------------------------------------------------ */

/* The upload's manifest (the row's request_body) into a record for m, or a
 * message completed at once: a file already stored, or one not to fetch. */
static void begin(struct bridge *b, struct message *m)
{
	jv manifest = json_field(m->line, "request");
	jv id = json_field(manifest, "file_id");
	if (!json_is_uuid(id)) {
		jv d = rows_describe(id);
		log_warn("upload row %s names no valid file id (%s): handed out without a file", m->id, jv_string_value(d));
		jv_free(d);
		complete(b, m, jv_invalid(), "(an upload without a valid file id: no file)");
		jv_free(id);
		jv_free(manifest);
		return;
	}
	struct upload *u = xcalloc(1, sizeof *u);
	u->b = b;
	u->m = m;
	u->fd = -1;
	memcpy(u->file_id, jv_string_value(id), UUID_LEN + 1);
	jv_free(id);
	u->name = json_string_dup(manifest, "name");
	u->mime = json_string_dup(manifest, "mimeType");
	if (!u->mime)
		u->mime = json_string_dup(manifest, "mime_type");
	if (!u->mime)
		u->mime = xstrdup("application/octet-stream");
	jv size = json_field(manifest, "size");
	u->size = rows_seq_number(size);
	jv_free(size);
	jv_free(manifest);
	u->next = b->up.list;
	if (u->next)
		u->next->prev = u;
	b->up.list = u;
	m->upload = u;

	struct stat st;
	if (place(u) && lstat(u->path, &st) == 0 && S_ISREG(st.st_mode)) {
		/* Fetched before a restart: never twice. Acknowledged again, which is harmless. */
		stored(u, (int64_t)st.st_size);
		return;
	}
	if (u->size > b->s->max_file_size) {
		char *why = xasprintf("%lld bytes, larger than --max-file-size (%ld bytes)", (long long)u->size,
				      b->s->max_file_size);
		give_up(u, why);
		free(why);
	}
}

void uploads_tick(struct bridge *b, int64_t now)
{
	if (inbox_uploads_waiting(b->ib) > 0)
		for (struct message *m = inbox_first(b->ib); m; m = inbox_next(b->ib, m))
			if (m->upload_wait && !m->upload)
				begin(b, m);
	for (struct upload *u = b->up.list, *next; u; u = next) {
		next = u->next;
		if (u->stage == UP_WAITING && now >= u->next_at)
			start_fetch(u);
	}
}

int64_t uploads_next_wakeup(struct bridge *b, int64_t now)
{
	int64_t wait = -1;
	for (struct upload *u = b->up.list; u; u = u->next)
		if (u->stage == UP_WAITING)
			wait = wait_min(wait, u->next_at > now ? u->next_at - now : 0);
	return wait;
}

void uploads_stop(struct bridge *b)
{
	while (b->up.list)
		record_free(b->up.list);
}
