/* util.c: allocation that dies on out-of-memory, UUIDs, clocks and backoff, readiness, growable buffers, strict number parsing. */
#include <config.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "sha1.h"
#include "util.h"

/* Nothing sensible is left to do. The message is written directly: util sits
 * below the log (which allocates through it), and formatting a log line could
 * itself need memory. */
static _Noreturn void die(const char *what, const char *detail)
{
	char line[512];
	int n = snprintf(line, sizeof line, "molecule-connect: %s%s%s\n", what, detail ? ": " : "",
			 detail ? detail : "");
	if (n < 0 || (size_t)n >= sizeof line)
		n = (int)strlen(line);
	ssize_t r = write(STDERR_FILENO, line, (size_t)n);
	(void)r;
	exit(1);
}

static _Noreturn void die_oom(void)
{
	die("out of memory", NULL);
}

void *xmalloc(size_t n)
{
	/* malloc(0) may legitimately return NULL; ask for one byte instead. */
	void *p = malloc(n ? n : 1);
	if (!p)
		die_oom();
	return p;
}

void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);
	if (!p)
		die_oom();
	return p;
}

void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (!q)
		die_oom();
	return q;
}

char *xstrdup(const char *s)
{
	char *p = strdup(s);
	if (!p)
		die_oom();
	return p;
}

char *xstrndup(const char *s, size_t n)
{
	char *p = strndup(s, n);
	if (!p)
		die_oom();
	return p;
}

char *xasprintf(const char *fmt, ...)
{
	va_list ap, ap2;
	va_start(ap, fmt);
	va_copy(ap2, ap);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0) {
		/* Only an invalid format or a wide-character conversion error gets
		 * here: a programming error, but dying would hide it less than
		 * returning NULL to callers that never check. */
		va_end(ap2);
		die("internal error: bad format string", fmt);
	}
	char *p = xmalloc((size_t)n + 1);
	vsnprintf(p, (size_t)n + 1, fmt, ap2);
	va_end(ap2);
	return p;
}

bool uuid_valid(const char *s)
{
	if (!s)
		return false;
	for (int i = 0; i < UUID_LEN; i++) {
		char c = s[i];
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (c != '-')
				return false;
		} else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
			/* Also stops at the NUL of a short string. */
			return false;
		}
	}
	return s[UUID_LEN] == '\0';
}

/* Fills buf from /dev/urandom, for kernels without getrandom(2). */
static int urandom_fill(unsigned char *buf, size_t n)
{
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	size_t got = 0;
	while (got < n) {
		ssize_t r = read(fd, buf + got, n - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			close(fd);
			return -1;
		}
		got += (size_t)r;
	}
	close(fd);
	return 0;
}

static void random_fill(unsigned char *buf, size_t n)
{
	size_t got = 0;
	while (got < n) {
		ssize_t r = getrandom(buf + got, n - got, 0);
		if (r > 0) {
			got += (size_t)r;
			continue;
		}
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && errno == ENOSYS && urandom_fill(buf, n) == 0)
			return;
		die("cannot read random bytes", strerror(r < 0 ? errno : EIO));
	}
}

static void uuid_format(unsigned char b[16], int version, char out[UUID_LEN + 1]);

void uuid_new(char out[UUID_LEN + 1])
{
	/* Two ids per reply: draw random bytes in batches, not a syscall each. */
	static unsigned char pool[4096];
	static size_t left;
	if (left < 16) {
		random_fill(pool, sizeof pool);
		left = sizeof pool;
	}
	unsigned char b[16];
	memcpy(b, pool + sizeof pool - left, sizeof b);
	memset(pool + sizeof pool - left, 0, sizeof b);
	left -= sizeof b;
	uuid_format(b, 4, out);
}

/* The 16 bytes b as a UUID of that version (RFC 4122 variant) into out. */
static void uuid_format(unsigned char b[16], int version, char out[UUID_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	b[6] = (unsigned char)((b[6] & 0x0f) | (version << 4));
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
	char *o = out;
	for (int i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			*o++ = '-';
		*o++ = hex[b[i] >> 4];
		*o++ = hex[b[i] & 0x0f];
	}
	*o = '\0';
}

static int hex_value(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c - 'a' + 10;
}

bool uuid_name(const char *ns, const char *name, char out[UUID_LEN + 1])
{
	if (!uuid_valid(ns))
		return false;
	unsigned char nsb[16];
	for (int i = 0, j = 0; i < 16; j++) {
		if (ns[j] == '-')
			continue;
		nsb[i++] = (unsigned char)(hex_value(ns[j]) << 4 | hex_value(ns[j + 1]));
		j++;
	}
	struct sha1 c;
	unsigned char d[SHA1_LEN];
	sha1_init(&c);
	sha1_update(&c, nsb, sizeof nsb);
	sha1_update(&c, name, strlen(name));
	sha1_final(&c, d);
	uuid_format(d, 5, out);
	return true;
}

int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool once_per(int64_t *last_at, int64_t now, int64_t period_ms)
{
	if (now - *last_at < period_ms)
		return false;
	*last_at = now;
	return true;
}

int64_t wait_min(int64_t a, int64_t b)
{
	return a < 0 ? b : (b < 0 ? a : (a < b ? a : b));
}

int64_t backoff_ms(int attempt, int64_t base, int64_t cap)
{
	int64_t d = base;
	for (int i = 1; i < attempt && d < cap; i++)
		d *= 2;
	if (d > cap)
		d = cap;
	/* Jitter of +-25% so a fleet of bridges does not retry in lock-step. */
	int64_t span = d / 2;
	if (span > 0)
		d = d - span / 2 + (int64_t)((uint64_t)rand() % (uint64_t)(span + 1));
	return d < 1 ? 1 : d;
}

short fd_events(int fd, short events)
{
	struct pollfd p = { .fd = fd, .events = events };
	if (poll(&p, 1, 0) <= 0)
		return 0;
	return p.revents;
}

void buf_append(struct buf *b, const void *data, size_t n)
{
	/* data may point into b itself (appending a copy of its own contents):
	 * remember the offset, since growing moves the storage. */
	size_t self_off = SIZE_MAX;
	if (b->p && n && (const char *)data >= b->p && (const char *)data < b->p + b->cap)
		self_off = (size_t)((const char *)data - b->p);

	if (n > SIZE_MAX - b->len - 1)
		die_oom();
	size_t need = b->len + n + 1;
	if (need > b->cap) {
		size_t cap = b->cap ? b->cap : 64;
		while (cap < need)
			cap = cap > SIZE_MAX / 2 ? need : cap * 2;
		b->p = xrealloc(b->p, cap);
		b->cap = cap;
	}
	if (n) {
		const char *src = self_off != SIZE_MAX ? b->p + self_off : data;
		memmove(b->p + b->len, src, n);
	}
	b->len += n;
	b->p[b->len] = '\0';
}

void buf_consume(struct buf *b, size_t n)
{
	if (!b->p)
		return;
	if (n >= b->len) {
		b->len = 0;
	} else {
		memmove(b->p, b->p + n, b->len - n);
		b->len -= n;
	}
	b->p[b->len] = '\0';
}

void buf_free(struct buf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

int parse_long(const char *s, long min, long max, long *out)
{
	/* strtol alone would accept leading spaces and a '+': options are
	 * stricter, so the first character must be a digit or a minus sign. */
	if (!s || !(isdigit((unsigned char)s[0]) || s[0] == '-'))
		return -1;
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0')
		return -1;
	if (v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

int parse_seconds(const char *s, double min, double max, double *out)
{
	/* strtod also takes spaces, "inf", "nan" and hex floats ("0x10");
	 * only plain decimal notation is a sensible number of seconds. */
	if (!s || !*s || strspn(s, "0123456789.eE+-") != strlen(s))
		return -1;
	if (!(isdigit((unsigned char)s[0]) || s[0] == '.' || s[0] == '-'))
		return -1;
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno != 0 || end == s || *end != '\0' || !isfinite(v))
		return -1;
	if (v < min || v > max)
		return -1;
	*out = v;
	return 0;
}
