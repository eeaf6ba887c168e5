/* log.c: diagnostics on stderr: levels, text or JSON lines, secret redaction. */
#include <config.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jv.h>

#include "json.h"
#include "log.h"
#include "util.h"

#define PROG "molecule-connect"
/* Secrets shorter than this would redact ordinary words. */
#define SECRET_MIN_LEN 4
/* Server bodies can be large; a log line stays readable. Applied after
 * redaction, so a cut can never leave the start of a secret behind. */
#define MSG_MAX 16384

/* Logging works before log_init: warnings and info, text format. */
static enum log_level max_level = LV_INFO;
static bool json_format;
/* Kept longest first, so a secret that contains another is replaced whole. */
static char **secrets;
static size_t n_secrets;

void log_init(int verbosity, bool json)
{
	if (verbosity < 0)
		max_level = LV_ERROR;
	else if (verbosity == 0)
		max_level = LV_INFO;
	else if (verbosity == 1)
		max_level = LV_DEBUG;
	else
		max_level = LV_TRACE;
	json_format = json;
}

void log_add_secret(const char *s)
{
	if (!s || strlen(s) < SECRET_MIN_LEN)
		return;
	for (size_t i = 0; i < n_secrets; i++)
		if (strcmp(secrets[i], s) == 0)
			return;
	secrets = xrealloc(secrets, (n_secrets + 1) * sizeof *secrets);
	size_t len = strlen(s), at = n_secrets;
	while (at > 0 && strlen(secrets[at - 1]) < len) {
		secrets[at] = secrets[at - 1];
		at--;
	}
	secrets[at] = xstrdup(s);
	n_secrets++;
}

bool log_enabled(enum log_level lv)
{
	return lv <= max_level;
}

static const char *level_name(enum log_level lv)
{
	switch (lv) {
	case LV_ERROR: return "error";
	case LV_WARN: return "warning";
	case LV_INFO: return "info";
	case LV_DEBUG: return "debug";
	case LV_TRACE: return "trace";
	}
	return "info";
}

/* Replaces every occurrence of every secret in s (freed) by "[redacted]". */
static char *redact(char *s)
{
	for (size_t i = 0; i < n_secrets; i++) {
		const char *sec = secrets[i];
		size_t slen = strlen(sec);
		if (!strstr(s, sec))
			continue;
		struct buf out = {0};
		const char *p = s, *hit;
		while ((hit = strstr(p, sec)) != NULL) {
			buf_append(&out, p, (size_t)(hit - p));
			buf_append(&out, "[redacted]", 10);
			p = hit + slen;
		}
		buf_append(&out, p, strlen(p));
		free(s);
		s = out.p;
	}
	return s;
}

/* Cuts s to MSG_MAX bytes at a UTF-8 character boundary. */
static void truncate_message(char *s)
{
	size_t len = strlen(s);
	if (len <= MSG_MAX)
		return;
	size_t cut = MSG_MAX - 3;
	while (cut > 0 && ((unsigned char)s[cut] & 0xc0) == 0x80)
		cut--;
	memcpy(s + cut, "...", 4);
}

/* Text lines must stay one line: a server body with newlines or terminal
 * escapes would otherwise forge extra lines or garble the terminal. */
static void append_escaped(struct buf *b, const char *s)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c >= 0x20 && c != 0x7f) {
			buf_append(b, s, 1);
			continue;
		}
		char esc[5];
		switch (c) {
		case '\n': memcpy(esc, "\\n", 3); break;
		case '\r': memcpy(esc, "\\r", 3); break;
		case '\t': memcpy(esc, "\\t", 3); break;
		default: snprintf(esc, sizeof esc, "\\x%02x", c); break;
		}
		buf_append(b, esc, strlen(esc));
	}
}

/* RFC 3339 UTC with milliseconds: 2026-04-30T10:15:02.123Z */
static void format_timestamp(char out[32])
{
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + n, 32 - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

/* A JSON log line's first keys: when, and how grave. */
static jv json_line(enum log_level lv)
{
	char ts[32];
	format_timestamp(ts);
	jv o = jv_object();
	o = jv_object_set(o, jv_string("ts"), jv_string(ts));
	return jv_object_set(o, jv_string("level"), jv_string(level_name(lv)));
}

/* One write per line, so concurrent writers to the same stderr (children
 * share it) never interleave inside a line. */
static void write_line(const char *p, size_t len)
{
	while (len > 0) {
		ssize_t w = write(STDERR_FILENO, p, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return; /* nowhere left to report it */
		p += w;
		len -= (size_t)w;
	}
}

/* Writes msg (freed) as one line at lv; fields (an object, consumed) are added
 * to a JSON line and left out of a text one. */
static void emit(enum log_level lv, char *msg, jv fields)
{
	/* Redact before anything else touches the text, so no escaping or
	 * truncation can split a secret into pieces that no longer match. */
	msg = redact(msg);
	truncate_message(msg);
	size_t len = strlen(msg);
	while (len > 0 && (msg[len - 1] == '\n' || msg[len - 1] == '\r'))
		msg[--len] = '\0';

	struct buf line = {0};
	if (json_format) {
		jv o = json_line(lv);
		o = jv_object_set(o, jv_string("msg"), jv_string(msg));
		json_write(&line, jv_object_merge(o, fields));
	} else {
		jv_free(fields);
		const char *name = level_name(lv);
		buf_append(&line, PROG ": ", strlen(PROG ": "));
		buf_append(&line, name, strlen(name));
		buf_append(&line, ": ", 2);
		append_escaped(&line, msg);
	}
	buf_append(&line, "\n", 1);
	write_line(line.p, line.len);
	buf_free(&line);
	free(msg);
}

static void log_vmsg(enum log_level lv, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));
static void log_vmsg(enum log_level lv, const char *fmt, va_list ap)
{
	va_list ap2;
	va_copy(ap2, ap);
	int n = vsnprintf(NULL, 0, fmt, ap);
	char *msg;
	if (n < 0) {
		msg = xstrdup("(unformattable log message)");
	} else {
		msg = xmalloc((size_t)n + 1);
		vsnprintf(msg, (size_t)n + 1, fmt, ap2);
	}
	va_end(ap2);
	emit(lv, msg, jv_object());
}

void log_counts(enum log_level lv, const char *head, const struct log_count *counts, size_t n)
{
	if (!log_enabled(lv))
		return;
	int saved = errno;
	struct buf text = {0};
	jv fields = jv_object();
	buf_append(&text, head, strlen(head));
	for (size_t i = 0; i < n; i++) {
		char *part = xasprintf("%s%ld %s", i ? ", " : ": ", counts[i].value, counts[i].label);
		buf_append(&text, part, strlen(part));
		free(part);
		fields = jv_object_set(fields, jv_string(counts[i].key), jv_number((double)counts[i].value));
	}
	emit(lv, text.p ? text.p : xstrdup(""), fields);
	errno = saved;
}

void log_handler(const char *handler, long pid, const char *conversation, const char *line, size_t len)
{
	if (!log_enabled(LV_INFO))
		return;
	if (len > 0 && line[len - 1] == '\r')
		len--;
	struct buf text = {0};
	buf_append(&text, line, len);
	/* A NUL inside would end the C string early: it shows as "?". */
	for (size_t i = 0; i < text.len; i++)
		if (text.p[i] == '\0')
			text.p[i] = '?';
	char *msg = redact(text.p ? text.p : xstrdup(""));
	struct buf out = {0};
	if (json_format) {
		jv o = json_line(LV_INFO);
		o = jv_object_set(o, jv_string("handler"), jv_string(handler));
		o = jv_object_set(o, jv_string("pid"), jv_number((double)pid));
		if (conversation)
			o = jv_object_set(o, jv_string("conversation"), jv_string(conversation));
		o = jv_object_set(o, jv_string("msg"), jv_string(msg));
		json_write(&out, o);
	} else {
		char *head = xasprintf(PROG ": %s[%ld]: ", handler, pid);
		buf_append(&out, head, strlen(head));
		free(head);
		append_escaped(&out, msg);
	}
	buf_append(&out, "\n", 1);
	write_line(out.p, out.len);
	buf_free(&out);
	free(msg);
}

void log_msg(enum log_level lv, const char *fmt, ...)
{
	if (!log_enabled(lv))
		return;
	/* Callers often log and then look at errno (or log strerror(errno)
	 * twice); logging must not disturb it. */
	int saved = errno;
	va_list ap;
	va_start(ap, fmt);
	log_vmsg(lv, fmt, ap);
	va_end(ap);
	errno = saved;
}

_Noreturn void fatal(int status, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vmsg(LV_ERROR, fmt, ap);
	va_end(ap);
	exit(status);
}
