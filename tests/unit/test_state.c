/* test_state.c: unit tests for state.c: lock, load and validation, atomic save. */
#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jv.h>

#include "log.h"
#include "state.h"
#include "tap.h"
#include "util.h"

#define WS "11111111-2222-4333-8444-555555555555"
#define OTHER_WS "99999999-2222-4333-8444-555555555555"
#define ROW1 "aaaaaaaa-0000-4000-8000-000000000001"
#define ROW2 "aaaaaaaa-0000-4000-8000-000000000002"
#define PEER "bbbbbbbb-0000-4000-8000-000000000003"
#define TOKEN "tok_9f8e7d6c5b4a39281706f5e4d3c2b1a0ZYXWVUTSR"

static char *base;

static void write_file(const char *path, const char *text, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
	if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text)) {
		perror(path);
		exit(99);
	}
	fchmod(fd, mode);
	close(fd);
}

static char *read_file(const char *path)
{
	struct buf b = {0};
	buf_append(&b, "", 0);
	int fd = open(path, O_RDONLY);
	char chunk[4096];
	ssize_t r;
	while (fd >= 0 && (r = read(fd, chunk, sizeof chunk)) > 0)
		buf_append(&b, chunk, (size_t)r);
	if (fd >= 0)
		close(fd);
	return b.p;
}

static mode_t file_mode(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 ? st.st_mode & 07777 : (mode_t)-1;
}

/* Names in dir starting with '.' (leftover temporary files). */
static int count_hidden(const char *dir)
{
	DIR *d = opendir(dir);
	int n = 0;
	struct dirent *e;
	while (d && (e = readdir(d)) != NULL)
		if (e->d_name[0] == '.' && strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
			n++;
	if (d)
		closedir(d);
	return n;
}

static bool contains(const char *s, const char *needle)
{
	return s && strstr(s, needle) != NULL;
}

static jv full_state(const char *cursor)
{
	char *s = xasprintf(
		"{\"workspace_id\":\"" WS "\",\"last_since_id\":\"%s\","
		"\"done_seq\":4711,\"done_at\":\"2026-04-30T10:15:02.123456Z\","
		"\"replay_from\":\"2026-04-30T10:00:00Z\","
		"\"done_ids\":[\"" ROW1 "\",\"" ROW2 "\"],"
		"\"replies\":[{\"id\":\"" ROW1 "\",\"path\":\"/workspaces/" PEER "/a2a\","
		"\"body\":{\"jsonrpc\":\"2.0\",\"params\":{\"message\":{\"parts\":[{\"kind\":\"text\",\"text\":\"h\\u00e9\\n\"}]}}}},"
		"{\"id\":\"" ROW2 "\",\"path\":\"/workspaces/" WS "/notify\",\"body\":{\"message\":\"hi\"}}],"
		"\"auth_token\":\"" TOKEN "\","
		"\"future_field\":{\"kept\":[1,\"two\",null]}}", cursor);
	jv v = jv_parse(s);
	free(s);
	return v;
}

static void test_lock(void)
{
	char *dir = xasprintf("%s/a/b/state", base);
	char *top = xasprintf("%s/a", base);
	char *err = NULL;

	int fd = state_lock(dir, WS, &err);
	ok(fd >= 0, "lock: succeeds in a fresh directory (%s)", err ? err : "");
	is_int(file_mode(dir), 0700, "lock: creates the state directory with mode 0700");
	is_int(file_mode(top), 0700, "lock: creates missing parents with mode 0700");
	char *lockpath = xasprintf("%s/" WS ".lock", dir);
	is_int(file_mode(lockpath), 0600, "lock: lock file has mode 0600");
	ok(fd < 0 || (fcntl(fd, F_GETFD) & FD_CLOEXEC), "lock: descriptor is close-on-exec");

	/* A second open file description in the same process conflicts with
	 * flock, exactly like a second process would. */
	char *err2 = NULL;
	int fd2 = state_lock(dir, WS, &err2);
	ok(fd2 == -1, "lock: a second lock on the same workspace fails");
	ok(contains(err2, "another molecule-connect is running for workspace " WS) && contains(err2, lockpath),
	   "lock: the error names the workspace and the lock file (%s)", err2 ? err2 : "(null)");
	free(err2);

	err2 = NULL;
	int fd3 = state_lock(dir, OTHER_WS, &err2);
	ok(fd3 >= 0, "lock: another workspace locks independently");
	if (fd3 >= 0)
		close(fd3);
	free(err2);

	if (fd >= 0)
		close(fd);
	err2 = NULL;
	fd2 = state_lock(dir, WS, &err2);
	ok(fd2 >= 0, "lock: free again once the holder closes it");
	if (fd2 >= 0)
		close(fd2);
	free(err2);

	/* An existing directory open to others is tightened. */
	char *loose = xasprintf("%s/loose", base);
	mkdir(loose, 0755);
	chmod(loose, 0755);
	err2 = NULL;
	fd2 = state_lock(loose, WS, &err2);
	ok(fd2 >= 0 && file_mode(loose) == 0700, "lock: an existing 0755 directory of ours becomes 0700");
	if (fd2 >= 0)
		close(fd2);
	free(err2);

	/* A path through a regular file cannot be a directory. */
	char *file = xasprintf("%s/plainfile", base);
	write_file(file, "x", 0600);
	char *under = xasprintf("%s/sub", file);
	err2 = NULL;
	fd2 = state_lock(under, WS, &err2);
	ok(fd2 == -1 && contains(err2, under) && contains(err2, strerror(ENOTDIR)),
	   "lock: a directory below a file fails naming path and reason (%s)", err2 ? err2 : "(null)");
	free(err2);

	err2 = NULL;
	fd2 = state_lock(dir, "../../etc/x", &err2);
	ok(fd2 == -1 && err2 != NULL, "lock: a workspace id that is not a UUID is refused");
	free(err2);

	free(under);
	free(file);
	free(loose);
	free(lockpath);
	free(top);
	free(dir);
	free(err);
}

static void test_roundtrip(void)
{
	char *dir = xasprintf("%s/rt", base);
	mkdir(dir, 0700);
	char *err = NULL;
	jv st = jv_invalid();

	int rc = state_load(dir, WS, &st, &err);
	is_int(rc, 0, "load: no file gives 0");
	jv want = jv_parse("{\"workspace_id\":\"" WS "\",\"last_since_id\":\"\",\"done_ids\":[],\"replies\":[]}");
	ok(jv_equal(jv_copy(st), jv_copy(want)), "load: no file gives a fresh object");
	jv_free(want);
	jv_free(st);

	jv full = full_state(ROW2);
	rc = state_save(dir, WS, full, &err);
	ok(rc == 0, "save: succeeds (%s)", err ? err : "");
	char *path = state_path(dir, WS);
	is_int(file_mode(path), 0600, "save: file mode 0600");
	is_int(count_hidden(dir), 0, "save: no temporary file left behind");

	char *text = read_file(path);
	jv compact = jv_dump_string(jv_copy(full), 0);
	char *want_text = xasprintf("%s\n", jv_string_value(compact));
	is_str(text, want_text, "save: compact JSON and a newline");
	free(want_text);
	jv_free(compact);
	free(text);

	st = jv_invalid();
	rc = state_load(dir, WS, &st, &err);
	is_int(rc, 1, "load: existing file gives 1");
	ok(jv_equal(jv_copy(st), jv_copy(full)), "load: every field round-trips, unknown field kept");
	jv_free(st);

	/* A second save replaces the first. */
	jv next = jv_object_set(jv_copy(full), jv_string("last_since_id"), jv_string(ROW1));
	rc = state_save(dir, WS, next, &err);
	st = jv_invalid();
	state_load(dir, WS, &st, &err);
	jv cur = jv_object_get(jv_copy(st), jv_string("last_since_id"));
	ok(rc == 0 && jv_get_kind(cur) == JV_KIND_STRING && strcmp(jv_string_value(cur), ROW1) == 0,
	   "save: a second save replaces the cursor");
	is_int(count_hidden(dir), 0, "save: still no temporary file after a replace");
	jv_free(cur);
	jv_free(st);
	jv_free(next);

	char *sp = state_path("/x/y/", WS);
	is_str(sp, "/x/y/" WS ".json", "state_path: trailing slash not doubled");
	free(sp);

	/* Go format: only the two fields the Go client writes. */
	write_file(path, "{\"workspace_id\":\"" WS "\",\"last_since_id\":\"" ROW2 "\"}\n", 0600);
	st = jv_invalid();
	rc = state_load(dir, WS, &st, &err);
	want = jv_parse("{\"workspace_id\":\"" WS "\",\"last_since_id\":\"" ROW2 "\",\"done_ids\":[],\"replies\":[]}");
	ok(rc == 1 && jv_equal(jv_copy(st), jv_copy(want)), "load: Go-format file gets the defaults");
	jv_free(want);
	jv_free(st);

	write_file(path, "{\"last_since_id\":null,\"done_seq\":null,\"done_at\":null,\"replay_from\":null}", 0600);
	st = jv_invalid();
	rc = state_load(dir, WS, &st, &err);
	want = jv_parse("{\"workspace_id\":\"" WS "\",\"last_since_id\":\"\",\"done_ids\":[],\"replies\":[]}");
	ok(rc == 1 && jv_equal(jv_copy(st), jv_copy(want)), "load: null cursor, seq and times and a missing id normalised");
	jv_free(want);
	jv_free(st);

	/* Readable by others: loaded, with a warning. */
	write_file(path, "{\"workspace_id\":\"" WS "\",\"last_since_id\":\"\"}", 0644);
	int saved = dup(STDERR_FILENO);
	char logpath[] = "/tmp/test_state.log.XXXXXX";
	int lfd = mkstemp(logpath);
	dup2(lfd, STDERR_FILENO);
	st = jv_invalid();
	rc = state_load(dir, WS, &st, &err);
	dup2(saved, STDERR_FILENO);
	close(saved);
	close(lfd);
	char *logged = read_file(logpath);
	unlink(logpath);
	ok(rc == 1 && contains(logged, "warning") && contains(logged, path) && contains(logged, "0644"),
	   "load: a group/other-readable file loads with a warning");
	free(logged);
	jv_free(st);

	jv_free(full);
	free(path);
	free(dir);
	free(err);
}

/* Writes text as the state file and expects load to refuse it with a
 * message holding every string in must (NULL-terminated). */
static void expect_corrupt(const char *dir, const char *text, const char *name, const char *must)
{
	char *path = state_path(dir, WS);
	write_file(path, text, 0600);
	char *err = NULL;
	jv st = jv_null();
	int rc = state_load(dir, WS, &st, &err);
	ok(rc == -1 && jv_get_kind(st) == JV_KIND_INVALID && contains(err, path) && contains(err, must) &&
	   !contains(err, TOKEN) && !strchr(err, '\n'),
	   "corrupt: %s (%s)", name, err ? err : "(null)");
	jv_free(st);
	free(err);
	free(path);
}

static void test_corrupt(void)
{
	char *dir = xasprintf("%s/bad", base);
	mkdir(dir, 0700);
	const char *head = "{\"workspace_id\":\"" WS "\",";

	expect_corrupt(dir, "hello", "not JSON", "is corrupt");
	expect_corrupt(dir, "", "empty file", "empty");
	expect_corrupt(dir, " \n", "only whitespace", "is corrupt");
	expect_corrupt(dir, "[1,2]", "an array", "object");
	expect_corrupt(dir, "{\"workspace_id\":\"" WS "\",\"last_since_id\":\"aaaa", "truncated file",
		       "is corrupt");
	expect_corrupt(dir, "{\"auth_token\":\"" TOKEN "\" garbage}", "syntax error never echoes the token",
		       "is corrupt");
	expect_corrupt(dir, "{} {}", "two values", "is corrupt");
	expect_corrupt(dir, "{\"workspace_id\":\"" OTHER_WS "\"}", "another workspace_id", "another workspace");
	expect_corrupt(dir, "{\"workspace_id\":7}", "workspace_id not a string", "workspace_id");

	char *t;
#define CASE(body, name, must) \
	(t = xasprintf("%s%s}", head, body), expect_corrupt(dir, t, name, must), free(t))
	CASE("\"last_since_id\":\"not-a-uuid\"", "last_since_id not a UUID", "last_since_id");
	CASE("\"last_since_id\":5", "last_since_id a number", "last_since_id");
	CASE("\"last_since_id\":\"AAAAAAAA-0000-4000-8000-000000000001\"", "last_since_id upper case",
	     "last_since_id");
	CASE("\"done_ids\":{}", "done_ids not an array", "done_ids");
	CASE("\"done_ids\":[\"" ROW1 "\",\"nope\"]", "bad done_ids entry", "done_ids[1]");
	CASE("\"done_ids\":[null]", "null done_ids entry", "done_ids[0]");
	CASE("\"replies\":\"x\"", "replies not an array", "replies");
	CASE("\"replies\":[7]", "reply not an object", "replies[0]");
	CASE("\"replies\":[{\"id\":\"x\",\"path\":\"/workspaces/" PEER "/a2a\",\"body\":{}}]", "reply id bad",
	     "replies[0].id");
	CASE("\"replies\":[{\"id\":\"" ROW1 "\",\"path\":\"/workspaces/../x/a2a\",\"body\":{}}]",
	     "reply path with ..", "replies[0].path");
	CASE("\"replies\":[{\"id\":\"" ROW1 "\",\"path\":\"/workspaces/" PEER "/a2a/../../x\",\"body\":{}}]",
	     "reply path with a tail", "replies[0].path");
	CASE("\"replies\":[{\"id\":\"" ROW1 "\",\"path\":\"/workspaces/" PEER "/delete\",\"body\":{}}]",
	     "reply path to another endpoint", "replies[0].path");
	CASE("\"replies\":[{\"id\":\"" ROW1 "\",\"path\":\"/workspaces/" PEER "/a2a\\u0000\",\"body\":{}}]",
	     "reply path with a NUL", "replies[0].path");
	CASE("\"replies\":[{\"id\":\"" ROW1 "\",\"path\":\"/workspaces/" PEER "/notify\",\"body\":{}},"
	     "{\"id\":\"" ROW2 "\",\"path\":\"/workspaces/" PEER "/a2a\",\"body\":[]}]",
	     "reply body not an object", "replies[1].body");
	CASE("\"auth_token\":42", "auth_token not a string", "auth_token");
	CASE("\"done_seq\":-1", "done_seq negative", "done_seq");
	CASE("\"done_seq\":1.5", "done_seq not whole", "done_seq");
	CASE("\"done_seq\":\"12\"", "done_seq a string", "done_seq");
	CASE("\"done_at\":\"yesterday\"", "done_at not a time", "done_at");
	CASE("\"done_at\":12", "done_at a number", "done_at");
	CASE("\"replay_from\":\"2026-04-30T10:00:00Z\\u0000x\"", "replay_from with a NUL", "replay_from");
	CASE("\"replay_from\":\"2026-04-30\"", "replay_from without a time of day", "replay_from");
	CASE("\"auth_token\":\"" TOKEN "\",\"last_since_id\":\"x\"", "a bad field never echoes the token",
	     "last_since_id");
#undef CASE

	/* Over the size cap: a sparse file costs nothing on disk. */
	char *path = state_path(dir, WS);
	write_file(path, "{", 0600);
	if (truncate(path, 64L * 1024 * 1024 + 1) == 0) {
		char *err = NULL;
		jv st = jv_null();
		int rc = state_load(dir, WS, &st, &err);
		ok(rc == -1 && contains(err, "too large") && contains(err, path), "corrupt: over 64 MiB refused (%s)",
		   err ? err : "(null)");
		jv_free(st);
		free(err);
	} else {
		ok(1, "corrupt: over 64 MiB refused # SKIP cannot make a sparse file");
	}
	unlink(path);

	/* A directory where the file should be. */
	mkdir(path, 0700);
	char *err = NULL;
	jv st = jv_null();
	int rc = state_load(dir, WS, &st, &err);
	ok(rc == -1 && contains(err, path), "load: a directory in place of the file is an error (%s)",
	   err ? err : "(null)");
	jv_free(st);
	free(err);
	rmdir(path);

	free(path);
	free(dir);
}

static void test_save_failures(void)
{
	char *dir = xasprintf("%s/fail", base);
	mkdir(dir, 0700);
	char *path = state_path(dir, WS);
	char *err = NULL;
	jv good = full_state(ROW1);
	state_save(dir, WS, good, &err);
	char *before = read_file(path);

	/* A file size limit makes the write itself fail (EFBIG), even for root:
	 * the error path after the temporary file exists. */
	signal(SIGXFSZ, SIG_IGN);
	struct rlimit old, small;
	getrlimit(RLIMIT_FSIZE, &old);
	small = old;
	small.rlim_cur = 1024;
	jv big = jv_object_set(jv_copy(good), jv_string("padding"), jv_string(before));
	for (int i = 0; i < 3; i++)
		big = jv_object_set(big, jv_string("padding"),
				    jv_string_concat(jv_object_get(jv_copy(big), jv_string("padding")),
						     jv_string(before)));
	setrlimit(RLIMIT_FSIZE, &small);
	int rc = state_save(dir, WS, big, &err);
	setrlimit(RLIMIT_FSIZE, &old);
	ok(rc == -1 && contains(err, path) && contains(err, strerror(EFBIG)),
	   "save: a failed write is reported with path and reason (%s)", err ? err : "(null)");
	free(err);
	err = NULL;
	char *after = read_file(path);
	is_str(after, before, "save: the old file is untouched after a failed write");
	is_int(count_hidden(dir), 0, "save: the temporary file is removed after a failed write");
	free(after);
	jv_free(big);

	/* A read-only directory: root is not stopped by permissions. */
	if (geteuid() != 0) {
		chmod(dir, 0500);
		rc = state_save(dir, WS, good, &err);
		chmod(dir, 0700);
		ok(rc == -1 && contains(err, path) && contains(err, strerror(EACCES)),
		   "save: a read-only directory fails (%s)", err ? err : "(null)");
		free(err);
		err = NULL;
		after = read_file(path);
		is_str(after, before, "save: the old file is untouched in a read-only directory");
		free(after);
	} else {
		ok(1, "save: a read-only directory fails # SKIP running as root");
		ok(1, "save: the old file is untouched in a read-only directory # SKIP running as root");
	}

	/* A "directory" that is a file. */
	char *file = xasprintf("%s/notadir", base);
	write_file(file, "x", 0600);
	char *fpath = state_path(file, WS);
	rc = state_save(file, WS, good, &err);
	ok(rc == -1 && contains(err, fpath) && contains(err, strerror(ENOTDIR)),
	   "save: a directory that is a file fails (%s)", err ? err : "(null)");
	free(err);
	err = NULL;
	free(fpath);
	free(file);

	jv not_object = jv_array();
	rc = state_save(dir, WS, not_object, &err);
	jv_free(not_object);
	ok(rc == -1 && err != NULL, "save: a non-object state is refused");
	free(err);
	err = NULL;
	after = read_file(path);
	is_str(after, before, "save: the old file is untouched after a refused save");
	free(after);

	free(before);
	jv_free(good);
	free(path);
	free(dir);
}

static void remove_tree(const char *path)
{
	char *cmd = xasprintf("rm -rf '%s'", path);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", path);
	free(cmd);
}

int main(void)
{
	char tmpl[] = "/tmp/test_state.XXXXXX";
	base = mkdtemp(tmpl);
	if (!base) {
		perror("mkdtemp");
		return 99;
	}
	log_init(0, false);
	test_lock();
	test_roundtrip();
	test_corrupt();
	test_save_failures();
	remove_tree(base);
	return done_testing();
}
