/* fuzz_state.c: libFuzzer target for the state file: the input is written as
 * <dir>/<ws>.json and loaded; what loads goes through the inbox and is saved
 * and loaded again, as a stop and a restart would.
 *
 * Checks: a load either succeeds with every field normalised or fails with a
 * one-line reason; a state the program saved itself always loads again, with
 * the same cursor, done ids, kept replies and adopted token (nothing lost
 * across a restart). The directory is made once, under $MC_FUZZ_TMPDIR, else
 * /dev/shm (saves fsync), else $TMPDIR or /tmp, and removed at exit. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jv.h>

#include "inbox.h"
#include "log.h"
#include "state.h"
#include "util.h"

#include "fuzz_jq.h"

static const char ws[] = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
static char dir[4096];
static char *file;

static void remove_dir(void)
{
	if (!dir[0])
		return;
	DIR *d = opendir(dir);
	if (d) {
		struct dirent *e;
		while ((e = readdir(d)) != NULL) {
			if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
				continue;
			char *p = xasprintf("%s/%s", dir, e->d_name);
			unlink(p);
			free(p);
		}
		closedir(d);
	}
	rmdir(dir);
	free(file);
}

static bool usable_dir(const char *d)
{
	struct stat st;
	return d && d[0] && stat(d, &st) == 0 && S_ISDIR(st.st_mode) && access(d, W_OK | X_OK) == 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	log_init(-1, false);
	jq16_init();
	const char *base = getenv("MC_FUZZ_TMPDIR");
	if (!usable_dir(base))
		base = usable_dir("/dev/shm") ? "/dev/shm" : getenv("TMPDIR");
	if (!usable_dir(base))
		base = "/tmp";
	snprintf(dir, sizeof dir, "%s/mc-fuzz-state.XXXXXX", base);
	if (!mkdtemp(dir)) {
		perror("fuzz_state: mkdtemp");
		exit(1);
	}
	file = state_path(dir, ws);
	atexit(remove_dir);
	return 0;
}

static void write_file(const uint8_t *data, size_t size)
{
	int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	CHECK(fd >= 0);
	while (size > 0) {
		ssize_t w = write(fd, data, size);
		if (w < 0 && errno == EINTR)
			continue;
		CHECK(w > 0);
		data += w;
		size -= (size_t)w;
	}
	CHECK(close(fd) == 0);
}

static jv get(jv obj, const char *key)
{
	return jv_object_get(jv_copy(obj), jv_string(key));
}

/* A loaded state has every field in its normal form (state.h). */
static void check_loaded(jv st /* not consumed */)
{
	CHECK(jv_get_kind(st) == JV_KIND_OBJECT);
	jv v = get(st, "workspace_id");
	CHECK(jv_get_kind(v) == JV_KIND_STRING && strcmp(jv_string_value(v), ws) == 0);
	jv_free(v);
	v = get(st, "last_since_id");
	CHECK(jv_get_kind(v) == JV_KIND_STRING);
	CHECK(jv_string_length_bytes(jv_copy(v)) == 0 ||
	      (jv_string_length_bytes(jv_copy(v)) == UUID_LEN && uuid_valid(jv_string_value(v))));
	jv_free(v);
	v = get(st, "done_ids");
	CHECK(jv_get_kind(v) == JV_KIND_ARRAY);
	jv_free(v);
	v = get(st, "replies");
	CHECK(jv_get_kind(v) == JV_KIND_ARRAY);
	jv_free(v);
	v = get(st, "auth_token");
	CHECK(jv_get_kind(v) == JV_KIND_INVALID || jv_get_kind(v) == JV_KIND_STRING);
	jv_free(v);
}

/* The ids of the kept replies, in order, with their paths. */
static jv reply_keys(jv st /* not consumed */)
{
	jv out = jv_array();
	jv replies = get(st, "replies");
	jv_array_foreach(replies, i, r) {
		out = jv_array_append(out, get(r, "id"));
		out = jv_array_append(out, get(r, "path"));
		jv_free(r);
	}
	jv_free(replies);
	return out;
}

/* done_ids as a sorted set. */
static jv done_set(jv st /* not consumed */)
{
	jv set = jv_object();
	jv done = get(st, "done_ids");
	jv_array_foreach(done, i, id) {
		set = jv_object_set(set, id, jv_true());
	}
	jv_free(done);
	return jv_keys(set);
}

/* Equal values, or both absent. */
static bool same(jv a, jv b /* both consumed */)
{
	if (!jv_is_valid(a) || !jv_is_valid(b)) {
		bool both = !jv_is_valid(a) && !jv_is_valid(b);
		jv_free(a);
		jv_free(b);
		return both;
	}
	return jv_equal(a, b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = xmalloc(size + 1);
	memcpy(text, data, size);
	text[size] = '\0';
	bool leaks = jq16_parse_leaks(text, size);
	free(text);
	if (leaks)
		return 0;
	write_file(data, size);
	jv st;
	char *err = NULL;
	int rc = state_load(dir, ws, &st, &err);
	CHECK(rc == 1 || rc == -1); /* the file exists: never "no file" */
	if (rc < 0) {
		CHECK(err != NULL && err[0] != '\0' && strchr(err, '\n') == NULL);
		CHECK(jv_get_kind(st) == JV_KIND_INVALID);
		free(err);
		jv_free(st);
		return 0;
	}
	CHECK(err == NULL);
	check_loaded(st);

	/* A run: the inbox takes the state, and writes it back at exit. */
	struct inbox *ib = inbox_new(ws, st);
	jv saved = inbox_state(ib, jv_copy(st));
	inbox_free(ib);
	check_loaded(saved);
	/* Nothing the file held is lost on the way through the inbox. */
	CHECK(same(get(saved, "last_since_id"), get(st, "last_since_id")));
	CHECK(same(done_set(saved), done_set(st)));
	CHECK(same(reply_keys(saved), reply_keys(st)));
	CHECK(same(get(saved, "auth_token"), get(st, "auth_token")));

	rc = state_save(dir, ws, saved, &err);
	if (rc != 0) {
		/* Only a full disk may refuse; say why and stop. */
		fprintf(stderr, "fuzz_state: state_save: %s\n", err);
		abort();
	}
	struct stat sb;
	CHECK(stat(file, &sb) == 0 && (sb.st_mode & 0777) == 0600);

	/* The restart: what this program saved must load, and hold the same. */
	jv again;
	rc = state_load(dir, ws, &again, &err);
	if (rc != 1) {
		fprintf(stderr, "fuzz_state: a saved state does not load again: %s\n", err ? err : "?");
		abort();
	}
	check_loaded(again);
	CHECK(same(get(again, "last_since_id"), get(saved, "last_since_id")));
	CHECK(same(done_set(again), done_set(saved)));
	CHECK(same(reply_keys(again), reply_keys(saved)));
	CHECK(same(get(again, "auth_token"), get(saved, "auth_token")));

	/* And a second round trip changes nothing this program owns. */
	ib = inbox_new(ws, again);
	jv saved2 = inbox_state(ib, jv_copy(again));
	inbox_free(ib);
	CHECK(same(get(saved2, "done_ids"), get(saved, "done_ids")));
	CHECK(same(reply_keys(saved2), reply_keys(saved)));
	jv_free(saved2);

	/* The kept replies are posted: none is kept any more, and every one of
	 * them is remembered as done (its row must not be handed out again). */
	ib = inbox_new(ws, again);
	struct message *orphan;
	while ((orphan = inbox_first(ib)) != NULL && orphan->orphan)
		inbox_orphan_done(ib, orphan);
	jv posted = inbox_state(ib, jv_copy(again));
	inbox_free(ib);
	jv replies = get(posted, "replies");
	CHECK(jv_get_kind(replies) == JV_KIND_ARRAY && jv_array_length(replies) == 0);
	jv done = done_set(posted);
	jv kept = get(saved, "replies");
	jv_array_foreach(kept, i, r) {
		jv id = get(r, "id");
		bool found = false;
		jv_array_foreach(done, j, d) {
			found = found || jv_equal(jv_copy(d), jv_copy(id));
			jv_free(d);
		}
		CHECK(found);
		jv_free(id);
		jv_free(r);
	}
	jv_free(kept);
	jv_free(done);
	jv_free(posted);

	jv_free(again);
	jv_free(saved);
	jv_free(st);
	return 0;
}
