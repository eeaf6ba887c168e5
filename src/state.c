/* state.c: the per-workspace state file: load, validate, atomic save, lock. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "log.h"
#include "rows.h"
#include "state.h"
#include "json.h"
#include "timestamp.h"
#include "util.h"

/* A state file holds a cursor, some ids and unsent replies; anything this big
 * is not ours, and reading it whole would only exhaust memory. */
#define STATE_MAX_BYTES (64L * 1024 * 1024)

/* dir without trailing slashes (but "/" stays "/"), so paths in messages
 * read naturally. Caller frees. */
static char *dir_clean(const char *dir)
{
	size_t len = strlen(dir);
	while (len > 1 && dir[len - 1] == '/')
		len--;
	return xstrndup(dir, len);
}

static char *dir_file(const char *dir, const char *prefix, const char *ws, const char *suffix)
{
	char *d = dir_clean(dir);
	char *p = xasprintf("%s/%s%s%s", strcmp(d, "/") == 0 ? "" : d, prefix, ws, suffix);
	free(d);
	return p;
}

char *state_path(const char *dir, const char *workspace_id)
{
	return dir_file(dir, "", workspace_id, ".json");
}

/* The id becomes part of a file name: only a canonical UUID may, so no
 * "../" or "/" can ever reach the file system. An empty dir would turn
 * "<dir>/<id>.json" into a file at the root. */
static int check_args(const char *dir, const char *ws, char **err)
{
	if (!dir || dir[0] == '\0') {
		*err = xstrdup("the state directory is an empty path");
		return -1;
	}
	if (!uuid_valid(ws)) {
		*err = xstrdup("invalid workspace id for the state file (expected a lower-case UUID)");
		return -1;
	}
	return 0;
}

/* mkdir -p with mode 0700 for every directory it creates; existing
 * directories along the way are left alone. */
static int make_dirs(const char *dir, char **err)
{
	char *path = dir_clean(dir);
	/* Walk every prefix ending just before a '/', then the whole path. */
	for (char *p = path + 1;; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char saved = *p;
		*p = '\0';
		if (mkdir(path, 0700) < 0 && errno != EEXIST) {
			*err = xasprintf("cannot create state directory %s: %s", path, strerror(errno));
			free(path);
			return -1;
		}
		*p = saved;
		if (saved == '\0')
			break;
	}
	free(path);
	return 0;
}

/* The directory may hold a token: it must not be readable by others. Fix
 * what is ours to fix, warn about the rest. */
static int secure_dir(const char *dir, char **err)
{
	struct stat st;
	if (stat(dir, &st) < 0) {
		*err = xasprintf("cannot use state directory %s: %s", dir, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		*err = xasprintf("cannot use state directory %s: %s", dir, strerror(ENOTDIR));
		return -1;
	}
	if ((st.st_mode & 077) == 0)
		return 0;
	if (st.st_uid != geteuid()) {
		log_warn("state directory %s has mode %04o and belongs to another user; "
			 "it should be 0700", dir, (unsigned)(st.st_mode & 07777));
		return 0;
	}
	if (chmod(dir, 0700) < 0) {
		log_warn("cannot set mode 0700 on state directory %s: %s", dir, strerror(errno));
		return 0;
	}
	log_info("state directory %s had mode %04o; set it to 0700", dir,
		 (unsigned)(st.st_mode & 07777));
	return 0;
}

int state_lock(const char *dir, const char *workspace_id, char **err)
{
	if (check_args(dir, workspace_id, err) < 0)
		return -1;
	if (make_dirs(dir, err) < 0 || secure_dir(dir, err) < 0)
		return -1;

	char *path = dir_file(dir, "", workspace_id, ".lock");
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		*err = xasprintf("cannot open lock file %s: %s", path, strerror(errno));
		free(path);
		return -1;
	}
	/* flock, not fcntl locks: an flock belongs to the open file description,
	 * so it also conflicts within one process and survives fork+exec only
	 * as long as the descriptor does (O_CLOEXEC: children never hold it). */
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int e = errno;
		if (e == EWOULDBLOCK)
			*err = xasprintf("another molecule-connect is running for workspace %s (lock %s)",
					 workspace_id, path);
		else
			*err = xasprintf("cannot lock %s: %s", path, strerror(e));
		close(fd);
		free(path);
		return -1;
	}
	free(path);
	return fd;
}

/* Reads the whole of fd into *out (NUL-terminated). 0, -1 with errno set, or
 * -2 when the file is over the cap. */
static int read_all(int fd, struct buf *out)
{
	char chunk[65536];
	for (;;) {
		ssize_t r = read(fd, chunk, sizeof chunk);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0)
			return 0;
		if (out->len + (size_t)r > (size_t)STATE_MAX_BYTES)
			return -2;
		buf_append(out, chunk, (size_t)r);
	}
}

/* "/workspaces/<uuid>/a2a" or "/workspaces/<uuid>/notify": the only places a
 * saved reply may be posted to. */
static bool reply_path_valid(const char *p)
{
	static const char prefix[] = "/workspaces/";
	if (strncmp(p, prefix, sizeof prefix - 1) != 0)
		return false;
	p += sizeof prefix - 1;
	char id[UUID_LEN + 1];
	if (strlen(p) < UUID_LEN)
		return false;
	memcpy(id, p, UUID_LEN);
	id[UUID_LEN] = '\0';
	if (!uuid_valid(id))
		return false;
	p += UUID_LEN;
	return strcmp(p, "/a2a") == 0 || strcmp(p, "/notify") == 0;
}

/* Checks one saved reply (consumed). NULL when fine, else a reason (caller frees). */
static char *check_reply(jv r, int i)
{
	if (jv_get_kind(r) != JV_KIND_OBJECT) {
		jv_free(r);
		return xasprintf("replies[%d] is not an object", i);
	}
	char *why = NULL;
	jv id = json_field(r, "id"), path = json_field(r, "path"), body = json_field(r, "body");
	if (!json_is_uuid(id))
		why = xasprintf("replies[%d].id is not a UUID", i);
	else if (jv_get_kind(path) != JV_KIND_STRING ||
		 (size_t)jv_string_length_bytes(jv_copy(path)) != strlen(jv_string_value(path)) ||
		 !reply_path_valid(jv_string_value(path)))
		why = xasprintf("replies[%d].path is not /workspaces/<uuid>/a2a or /workspaces/<uuid>/notify", i);
	else if (jv_get_kind(body) != JV_KIND_OBJECT)
		why = xasprintf("replies[%d].body is not an object", i);
	jv_free(id);
	jv_free(path);
	jv_free(body);
	jv_free(r);
	return why;
}

/* Validates and normalises a parsed state object (consumed). Returns the
 * normalised object, or jv_invalid() with *why set. Reasons name the field
 * but never echo values: one of them could be the token. */
static jv check_state(jv st, const char *ws, char **why)
{
	if (jv_get_kind(st) != JV_KIND_OBJECT) {
		*why = xasprintf("expected a JSON object, found %s", jv_kind_name(jv_get_kind(st)));
		jv_free(st);
		return jv_invalid();
	}

	/* null counts as absent for every field, as a hand edit might leave it. */
	jv v = json_field(st, "workspace_id");
	if (jv_get_kind(v) != JV_KIND_NULL) {
		if (jv_get_kind(v) != JV_KIND_STRING)
			*why = xstrdup("workspace_id is not a string");
		else if (strcmp(jv_string_value(v), ws) != 0)
			*why = uuid_valid(jv_string_value(v))
				? xasprintf("workspace_id is %s: the file belongs to another workspace",
					    jv_string_value(v))
				: xstrdup("workspace_id is not this workspace's id");
	}
	jv_free(v);
	if (*why)
		goto bad;
	st = jv_object_set(st, jv_string("workspace_id"), jv_string(ws));

	v = json_field(st, "last_since_id");
	if (jv_get_kind(v) == JV_KIND_NULL ||
	    (jv_get_kind(v) == JV_KIND_STRING && jv_string_length_bytes(jv_copy(v)) == 0)) {
		st = jv_object_set(st, jv_string("last_since_id"), jv_string(""));
	} else if (!json_is_uuid(v)) {
		*why = xstrdup("last_since_id is not a UUID");
	}
	jv_free(v);
	if (*why)
		goto bad;

	v = json_field(st, "done_ids");
	if (jv_get_kind(v) == JV_KIND_NULL) {
		st = jv_object_set(st, jv_string("done_ids"), jv_array());
	} else if (jv_get_kind(v) != JV_KIND_ARRAY) {
		*why = xstrdup("done_ids is not an array");
	} else {
		int n = jv_array_length(jv_copy(v));
		for (int i = 0; i < n && !*why; i++) {
			jv e = jv_array_get(jv_copy(v), i);
			if (!json_is_uuid(e))
				*why = xasprintf("done_ids[%d] is not a UUID", i);
			jv_free(e);
		}
	}
	jv_free(v);
	if (*why)
		goto bad;

	v = json_field(st, "replies");
	if (jv_get_kind(v) == JV_KIND_NULL) {
		st = jv_object_set(st, jv_string("replies"), jv_array());
	} else if (jv_get_kind(v) != JV_KIND_ARRAY) {
		*why = xstrdup("replies is not an array");
	} else {
		int n = jv_array_length(jv_copy(v));
		for (int i = 0; i < n && !*why; i++)
			*why = check_reply(jv_array_get(jv_copy(v), i), i);
	}
	jv_free(v);
	if (*why)
		goto bad;

	v = json_field(st, "done_seq");
	if (jv_get_kind(v) == JV_KIND_NULL)
		st = jv_object_delete(st, jv_string("done_seq"));
	else if (rows_seq_number(v) < 0)
		*why = xstrdup("done_seq is not a whole number from 0 to 2^53");
	jv_free(v);
	if (*why)
		goto bad;

	static const char *const times[] = { "done_at", "replay_from" };
	for (size_t i = 0; i < sizeof times / sizeof *times && !*why; i++) {
		struct ts t;
		v = json_field(st, times[i]);
		if (jv_get_kind(v) == JV_KIND_NULL)
			st = jv_object_delete(st, jv_string(times[i]));
		else if (jv_get_kind(v) != JV_KIND_STRING ||
			 (size_t)jv_string_length_bytes(jv_copy(v)) != strlen(jv_string_value(v)) ||
			 !ts_parse(jv_string_value(v), &t))
			*why = xasprintf("%s is not an RFC 3339 time", times[i]);
		jv_free(v);
	}
	if (*why)
		goto bad;

	v = json_field(st, "auth_token");
	if (jv_get_kind(v) == JV_KIND_NULL)
		st = jv_object_delete(st, jv_string("auth_token"));
	else if (jv_get_kind(v) != JV_KIND_STRING)
		*why = xstrdup("auth_token is not a string");
	jv_free(v);
	if (*why)
		goto bad;
	return st;

bad:
	jv_free(st);
	return jv_invalid();
}

static jv fresh_state(const char *ws)
{
	jv st = jv_object();
	st = jv_object_set(st, jv_string("workspace_id"), jv_string(ws));
	st = jv_object_set(st, jv_string("last_since_id"), jv_string(""));
	st = jv_object_set(st, jv_string("done_ids"), jv_array());
	st = jv_object_set(st, jv_string("replies"), jv_array());
	return st;
}


int state_load(const char *dir, const char *workspace_id, jv *out, char **err)
{
	*out = jv_invalid();
	if (check_args(dir, workspace_id, err) < 0)
		return -1;

	char *path = state_path(dir, workspace_id);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT) {
			free(path);
			*out = fresh_state(workspace_id);
			return 0;
		}
		*err = xasprintf("cannot open state file %s: %s", path, strerror(errno));
		free(path);
		return -1;
	}

	int rc = -1;
	char *reason = NULL;
	struct buf text = {0};
	struct stat st;
	if (fstat(fd, &st) < 0) {
		*err = xasprintf("cannot read state file %s: %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		*err = xasprintf("state file %s is not a regular file", path);
		goto out;
	}
	if (st.st_size > STATE_MAX_BYTES) {
		*err = xasprintf("state file %s is too large (over %ld MiB); move it away to start over",
				 path, STATE_MAX_BYTES / (1024 * 1024));
		goto out;
	}
	if (st.st_mode & 077)
		log_warn("state file %s has mode %04o: it may hold a token, and other users can read it; "
			 "it is rewritten with mode 0600 on the next save",
			 path, (unsigned)(st.st_mode & 07777));

	int r = read_all(fd, &text);
	if (r == -2) {
		*err = xasprintf("state file %s is too large (over %ld MiB); move it away to start over",
				 path, STATE_MAX_BYTES / (1024 * 1024));
		goto out;
	}
	if (r < 0) {
		*err = xasprintf("cannot read state file %s: %s", path, strerror(errno));
		goto out;
	}

	/* An empty file is not ours (saves are atomic): treat it like any other
	 * damage rather than silently starting over and replaying old work. */
	if (text.len == 0) {
		reason = xstrdup("the file is empty");
	} else {
		jv parsed = jv_parse_sized(text.p, (int)text.len);
		if (!jv_is_valid(parsed)) {
			reason = json_error(parsed);
		} else {
			jv checked = check_state(parsed, workspace_id, &reason);
			if (jv_is_valid(checked)) {
				*out = checked;
				rc = 1;
			}
		}
	}
	if (reason)
		*err = xasprintf("state file %s is corrupt: %s; move it away to start over", path, reason);

out:
	free(reason);
	buf_free(&text);
	close(fd);
	free(path);
	return rc;
}

/* Writes all of p, retrying partial writes and EINTR. 0 or -1 with errno. */
static int write_all(int fd, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t w = write(fd, p, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -1;
		if (w == 0) {
			errno = EIO;
			return -1;
		}
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

int state_save(const char *dir, const char *workspace_id, jv st, char **err)
{
	if (check_args(dir, workspace_id, err) < 0)
		return -1;
	char *path = state_path(dir, workspace_id);
	if (jv_get_kind(st) != JV_KIND_OBJECT) {
		*err = xasprintf("cannot save state file %s: the state is not an object", path);
		free(path);
		return -1;
	}

	char *tmp = dir_file(dir, ".", workspace_id, ".json.XXXXXX");
	size_t dumped_len = 0;
	char *dumped = json_dump(jv_copy(st), &dumped_len);
	const char *step = NULL;
	int e = 0;
	bool tmp_exists = false;

	int fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		step = "create temporary file";
		e = errno;
		goto fail;
	}
	tmp_exists = true;
	/* mkstemp already uses 0600, but say it rather than rely on it. */
	if (fchmod(fd, 0600) < 0) {
		step = "set mode";
		goto fail_errno;
	}
	if (write_all(fd, dumped, dumped_len) < 0 ||
	    write_all(fd, "\n", 1) < 0) {
		step = "write";
		goto fail_errno;
	}
	/* On NFS and some quota setups ENOSPC/EDQUOT only show up here. */
	if (fsync(fd) < 0) {
		step = "fsync";
		goto fail_errno;
	}
	int cr = close(fd);
	fd = -1;
	if (cr < 0) {
		step = "close";
		goto fail_errno;
	}
	if (rename(tmp, path) < 0) {
		step = "rename";
		goto fail_errno;
	}
	tmp_exists = false;

	/* Make the rename itself durable. After this point the new file is in
	 * place, so a failure is reported but there is nothing to undo. */
	char *d = dir_clean(dir);
	int dfd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	free(d);
	if (dfd < 0) {
		step = "open directory";
		goto fail_errno;
	}
	/* EINVAL: the file system cannot sync directories; nothing to do. */
	if (fsync(dfd) < 0 && errno != EINVAL) {
		e = errno;
		close(dfd);
		step = "fsync directory";
		goto fail;
	}
	close(dfd);

	free(dumped);
	free(tmp);
	free(path);
	return 0;

fail_errno:
	e = errno;
fail:
	if (fd >= 0)
		close(fd);
	if (tmp_exists)
		unlink(tmp);
	*err = xasprintf("cannot save state file %s: %s: %s", path, step, strerror(e));
	free(dumped);
	free(tmp);
	free(path);
	return -1;
}
