/* util.c: allocation that dies on out-of-memory, UUIDs, clocks, growable buffers, strict number parsing. */
#include <config.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

/* Out of memory: nothing sensible is left to do. The message is written
 * directly because formatting a log line could itself need memory. */
static _Noreturn void die_oom(void)
{
	static const char msg[] = "molecule-connect: out of memory\n";
	ssize_t r = write(STDERR_FILENO, msg, sizeof msg - 1);
	(void)r;
	exit(1);
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
		fatal(1, "internal error: bad format string \"%s\"", fmt);
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
		fatal(1, "cannot read random bytes: %s", strerror(r < 0 ? errno : EIO));
	}
}

void uuid_new(char out[UUID_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
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
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
	char *o = out;
	for (int i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			*o++ = '-';
		*o++ = hex[b[i] >> 4];
		*o++ = hex[b[i] & 0x0f];
	}
	*o = '\0';
}

int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
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

char *json_error(jv invalid)
{
	jv msg = jv_invalid_get_msg(invalid);
	char *reason;
	if (jv_get_kind(msg) == JV_KIND_STRING) {
		const char *m = jv_string_value(msg);
		const char *cut = strstr(m, " (while parsing");
		reason = cut ? xstrndup(m, (size_t)(cut - m)) : xstrdup(m);
		for (char *c = reason; *c; c++)
			if (*c == '\n' || *c == '\r')
				*c = ' ';
	} else {
		reason = xstrdup("not valid JSON");
	}
	jv_free(msg);
	return reason;
}

/* ---- compact JSON output ---- */

static void json_write_string(struct buf *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t run = 0;
	buf_append(b, "\"", 1);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		const char *esc = NULL;
		char u[7];
		if (c >= 0x20 && c != '"' && c != '\\' && c != 0x7f)
			continue; /* stays in the run */
		switch (c) {
		case '"': esc = "\\\""; break;
		case '\\': esc = "\\\\"; break;
		case '\b': esc = "\\b"; break;
		case '\f': esc = "\\f"; break;
		case '\n': esc = "\\n"; break;
		case '\r': esc = "\\r"; break;
		case '\t': esc = "\\t"; break;
		default:
			u[0] = '\\', u[1] = 'u', u[2] = '0', u[3] = '0';
			u[4] = hex[c >> 4], u[5] = hex[c & 15], u[6] = '\0';
			esc = u;
		}
		buf_append(b, s + run, i - run);
		buf_append(b, esc, strlen(esc));
		run = i + 1;
	}
	buf_append(b, s + run, n - run);
	buf_append(b, "\"", 1);
}

void json_write(struct buf *b, jv v)
{
	switch (jv_get_kind(v)) {
	case JV_KIND_NULL:
		buf_append(b, "null", 4);
		break;
	case JV_KIND_TRUE:
		buf_append(b, "true", 4);
		break;
	case JV_KIND_FALSE:
		buf_append(b, "false", 5);
		break;
	case JV_KIND_STRING:
		json_write_string(b, jv_string_value(v), (size_t)jv_string_length_bytes(jv_copy(v)));
		break;
	case JV_KIND_ARRAY:
		buf_append(b, "[", 1);
		jv_array_foreach(v, i, e) {
			if (i > 0)
				buf_append(b, ",", 1);
			json_write(b, e);
		}
		buf_append(b, "]", 1);
		break;
	case JV_KIND_OBJECT: {
		bool first = true;
		buf_append(b, "{", 1);
		/* libjq's own order (insertion order), as jv_dump_string has it. */
		for (int it = jv_object_iter(v); jv_object_iter_valid(v, it); it = jv_object_iter_next(v, it)) {
			jv key = jv_object_iter_key(v, it);
			if (!first)
				buf_append(b, ",", 1);
			first = false;
			json_write_string(b, jv_string_value(key), (size_t)jv_string_length_bytes(jv_copy(key)));
			buf_append(b, ":", 1);
			json_write(b, jv_object_iter_value(v, it));
			jv_free(key);
		}
		buf_append(b, "}", 1);
		break;
	}
	default: {
		/* Numbers (and anything else): libjq's own formatting. */
		jv d = jv_dump_string(jv_copy(v), 0);
		buf_append(b, jv_string_value(d), (size_t)jv_string_length_bytes(jv_copy(d)));
		jv_free(d);
		break;
	}
	}
	jv_free(v);
}

char *json_dump(jv v, size_t *len)
{
	struct buf b = { 0 };
	json_write(&b, v);
	if (!b.p)
		buf_append(&b, "", 0);
	if (len)
		*len = b.len;
	return b.p;
}
