/* fullfs.c: an LD_PRELOAD shim that makes one directory behave like a full disk. */

/*
 * For tests only (tests/resources.bats). Settings come from the environment:
 *
 *   MC_FULLFS_DIR   the directory that is "full" (nothing happens without it)
 *   MC_FULLFS_FLAG  while this file exists the directory is full. Its content picks
 *                   which calls fail with ENOSPC: any of "create" (mkstemp and
 *                   friends), "write" (write, pwrite, writev, ftruncate, fallocate),
 *                   "fsync" (fsync, fdatasync) and "rename" (rename, renameat,
 *                   renameat2), separated by blanks. Empty means
 *                   "write fsync rename": creating an empty file often still works
 *                   on a full disk, the data is what does not fit.
 *   MC_FULLFS_LOG   every failing call on a file in the directory, whether this shim
 *                   refused it or the system did (a read-only directory, say),
 *                   appends a line "<call> <errno>" here, so that a test can count
 *                   the attempts.
 *
 * Only regular files directly in the directory count: the directory itself, pipes,
 * sockets and files elsewhere are left alone. The shim is not built with
 * sanitizers; under AddressSanitizer run with ASAN_OPTIONS=verify_asan_link_order=0.
 */
#define _GNU_SOURCE 1

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

/* The next definition of name: libc's, or a sanitizer's interceptor. */
static void *next(const char *name)
{
	void *f = dlsym(RTLD_NEXT, name);
	if (!f) {
		fprintf(stderr, "fullfs: %s not found in the libraries after the shim\n", name);
		abort();
	}
	return f;
}

#define REAL(ret, name, params) \
	static ret(*real_##name) params; \
	if (!real_##name) \
		*(void **)&real_##name = next(#name)

/* The canonical form of the watched directory in out, or false when there is none
 * (not set, or does not exist yet). */
static bool watched_dir(char out[PATH_MAX])
{
	const char *dir = getenv("MC_FULLFS_DIR");
	return dir && dir[0] && realpath(dir, out) != NULL;
}

/* Whether path (relative to the directory base, or the working directory when base
 * is NULL) names an entry directly in the watched directory. */
static bool path_in_dir(const char *base, const char *path)
{
	char want[PATH_MAX], full[PATH_MAX], parent[PATH_MAX];
	if (!path || !watched_dir(want))
		return false;
	if (path[0] != '/' && base) {
		if (snprintf(full, sizeof full, "%s/%s", base, path) >= (int)sizeof full)
			return false;
	} else if (snprintf(full, sizeof full, "%s", path) >= (int)sizeof full) {
		return false;
	}
	char *slash = strrchr(full, '/');
	if (!slash)
		strcpy(full, ".");
	else if (slash == full)
		full[1] = '\0';
	else
		*slash = '\0';
	return realpath(full, parent) != NULL && strcmp(parent, want) == 0;
}

/* The path an open descriptor stands for (readlink of /proc/self/fd/N). */
static bool fd_path(int fd, char out[PATH_MAX])
{
	char link[64];
	snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, out, PATH_MAX - 1);
	if (n < 0)
		return false;
	out[n] = '\0';
	return true;
}

/* Whether fd is a regular file directly in the watched directory. */
static bool fd_in_dir(int fd)
{
	struct stat st;
	char path[PATH_MAX];
	int saved = errno;
	bool in = getenv("MC_FULLFS_DIR") && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
		  fd_path(fd, path) && path_in_dir(NULL, path);
	errno = saved;
	return in;
}

/* Whether dirfd/path (an *at() pair) is in the watched directory. */
static bool at_in_dir(int dirfd, const char *path)
{
	char base[PATH_MAX];
	int saved = errno;
	bool in;
	if (path && path[0] != '/' && dirfd != AT_FDCWD)
		in = fd_path(dirfd, base) && path_in_dir(base, path);
	else
		in = path_in_dir(NULL, path);
	errno = saved;
	return in;
}

static const char *errno_name(int err)
{
	switch (err) {
	case ENOSPC: return "ENOSPC";
	case EACCES: return "EACCES";
	case EPERM: return "EPERM";
	case EROFS: return "EROFS";
	case EDQUOT: return "EDQUOT";
	case EIO: return "EIO";
	default: return "other";
	}
}

/* Appends "<call> <errno>" to MC_FULLFS_LOG; errno is kept. */
static void note(const char *call, int err)
{
	const char *log = getenv("MC_FULLFS_LOG");
	if (!log || !log[0])
		return;
	REAL(ssize_t, write, (int, const void *, size_t));
	char line[128];
	int len = snprintf(line, sizeof line, "%s %s\n", call, errno_name(err));
	int fd = open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0666);
	if (fd >= 0) {
		if (real_write(fd, line, (size_t)len) < 0) {
			/* Nothing to do: the count is only a hint for the test. */
		}
		close(fd);
	}
	errno = err;
}

/* Whether the flag is up and names group (or is empty and group is a default one). */
static bool full_for(const char *group)
{
	const char *flag = getenv("MC_FULLFS_FLAG");
	if (!flag || !flag[0])
		return false;
	int fd = open(flag, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	char text[256];
	ssize_t n = read(fd, text, sizeof text - 1);
	close(fd);
	if (n < 0)
		return false;
	text[n] = '\0';
	bool any = false;
	for (char *save = NULL, *w = strtok_r(text, " \t\n", &save); w; w = strtok_r(NULL, " \t\n", &save)) {
		any = true;
		if (strcmp(w, group) == 0)
			return true;
	}
	return !any && strcmp(group, "create") != 0;
}

/* The refusal: -1 with errno ENOSPC, noted. */
static int refuse(const char *call)
{
	note(call, ENOSPC);
	errno = ENOSPC;
	return -1;
}

/* The outcome of a real call: noted when it failed. */
static long outcome(const char *call, long r)
{
	if (r < 0)
		note(call, errno);
	return r;
}

/* ---- create ---- */

#define MKTEMP(name, params, args, templ) \
	EXPORT int name params \
	{ \
		REAL(int, name, params); \
		if (!at_in_dir(AT_FDCWD, templ)) \
			return real_##name args; \
		if (full_for("create")) \
			return refuse(#name); \
		return (int)outcome(#name, real_##name args); \
	}

MKTEMP(mkstemp, (char *t), (t), t)
MKTEMP(mkostemp, (char *t, int flags), (t, flags), t)
MKTEMP(mkstemps, (char *t, int suffixlen), (t, suffixlen), t)
MKTEMP(mkostemps, (char *t, int suffixlen, int flags), (t, suffixlen, flags), t)
MKTEMP(mkstemp64, (char *t), (t), t)
MKTEMP(mkostemp64, (char *t, int flags), (t, flags), t)

/* ---- write, fsync ---- */

#define FDCALL(ret, name, group, params, args) \
	EXPORT ret name params \
	{ \
		REAL(ret, name, params); \
		if (!fd_in_dir(fd)) \
			return real_##name args; \
		if (full_for(group)) \
			return (ret)refuse(#name); \
		return (ret)outcome(#name, (long)real_##name args); \
	}

FDCALL(ssize_t, write, "write", (int fd, const void *p, size_t n), (fd, p, n))
FDCALL(ssize_t, pwrite, "write", (int fd, const void *p, size_t n, off_t off), (fd, p, n, off))
FDCALL(ssize_t, pwrite64, "write", (int fd, const void *p, size_t n, off64_t off), (fd, p, n, off))
FDCALL(ssize_t, writev, "write", (int fd, const struct iovec *v, int n), (fd, v, n))
FDCALL(int, ftruncate, "write", (int fd, off_t len), (fd, len))
FDCALL(int, fallocate, "write", (int fd, int mode, off_t off, off_t len), (fd, mode, off, len))
FDCALL(int, fsync, "fsync", (int fd), (fd))
FDCALL(int, fdatasync, "fsync", (int fd), (fd))

/* ---- rename ---- */

#define RENAME(name, params, args, olddir, oldp, newdir, newp) \
	EXPORT int name params \
	{ \
		REAL(int, name, params); \
		if (!at_in_dir(olddir, oldp) && !at_in_dir(newdir, newp)) \
			return real_##name args; \
		if (full_for("rename")) \
			return refuse(#name); \
		return (int)outcome(#name, real_##name args); \
	}

RENAME(rename, (const char *o, const char *n), (o, n), AT_FDCWD, o, AT_FDCWD, n)
RENAME(renameat, (int od, const char *o, int nd, const char *n), (od, o, nd, n), od, o, nd, n)
RENAME(renameat2, (int od, const char *o, int nd, const char *n, unsigned int fl),
       (od, o, nd, n, fl), od, o, nd, n)
