/* util.h: allocation that dies on out-of-memory, UUIDs, clocks and backoff, readiness, growable buffers. */
#ifndef MC_UTIL_H
#define MC_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define UUID_LEN 36

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* True when s is a lower-case canonical UUID (8-4-4-4-12 hex digits). */
bool uuid_valid(const char *s);
/* Writes a new random (version 4) UUID and its NUL into out. */
void uuid_new(char out[UUID_LEN + 1]);
/* Writes the name-based (version 5, SHA-1) UUID of name in the namespace ns (a
 * UUID) into out: the same inputs give the same id on every machine. false when
 * ns is not a lower-case UUID. */
bool uuid_name(const char *ns, const char *name, char out[UUID_LEN + 1]);

/* Monotonic milliseconds, for timers. */
int64_t now_ms(void);
/* The shorter of two waits in milliseconds, where a negative one means "none". */
int64_t wait_min(int64_t a, int64_t b);
/* For lines said at most once per period_ms: true (and *last_at set to now)
 * when period_ms has passed since *last_at. */
bool once_per(int64_t *last_at, int64_t now, int64_t period_ms);
/* Backoff for attempt n (1-based): min(cap, base * 2^(n-1)) with +-25% jitter. */
int64_t backoff_ms(int attempt, int64_t base, int64_t cap);
/* The poll(2) events of one descriptor that are ready now, without waiting. */
short fd_events(int fd, short events);

/* Growable byte buffer; p is always NUL-terminated when non-NULL. */
struct buf {
	char *p;
	size_t len, cap;
};
void buf_append(struct buf *b, const void *data, size_t n);
void buf_consume(struct buf *b, size_t n); /* drops n bytes from the front */
void buf_free(struct buf *b);

/* Strict number parsing for options: whole string, range-checked. 0 on success. */
int parse_long(const char *s, long min, long max, long *out);
/* Seconds with an optional fraction ("1", "0.25"); 0 on success. */
int parse_seconds(const char *s, double min, double max, double *out);

#endif
