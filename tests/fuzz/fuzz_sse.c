/* fuzz_sse.c: libFuzzer target for the event stream's framing: sse_feed in uneven
 * chunks, each event's data parsed as the bridge does.
 *
 * Input: byte 0 picks the cap, byte 1 seeds the chunk sizes, the rest is the
 * stream a platform would send. Framing must not depend on how the stream is
 * cut: every chunking is checked against feeding it in one piece, and memory
 * must stay bounded by the cap whatever the stream holds. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <jv.h>

#include "log.h"
#include "sse.h"

#include "fuzz_jq.h"

struct seen {
	size_t cap;
	size_t events;
	uint64_t hash;
	bool parse; /* also parse each event's data (only on one of the runs) */
};

static uint64_t mix(uint64_t h, const void *p, size_t n)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 0x100000001b3ULL;
	return h;
}

static void on_event(void *ctx, const struct sse_event *ev)
{
	struct seen *s = ctx;
	s->events++;
	CHECK(ev->type != NULL && ev->data != NULL);
	CHECK(strlen(ev->type) <= SSE_TYPE_MAX);
	CHECK(ev->len <= s->cap);
	CHECK(ev->data[ev->len] == '\0');
	s->hash = mix(s->hash, ev->type, strlen(ev->type) + 1);
	s->hash = mix(s->hash, &ev->truncated, sizeof ev->truncated);
	s->hash = mix(s->hash, &ev->len, sizeof ev->len);
	s->hash = mix(s->hash, ev->data, ev->len);
	if (!s->parse || ev->truncated || jq16_parse_leaks(ev->data, ev->len))
		return;
	/* What the bridge reads of an event: an object, its "type", its "data". */
	jv v = jv_parse_sized(ev->data, (int)ev->len);
	if (jv_get_kind(v) == JV_KIND_OBJECT) {
		jv type = jv_object_get(jv_copy(v), jv_string("type"));
		jv data = jv_object_get(jv_copy(v), jv_string("data"));
		if (jv_get_kind(data) == JV_KIND_OBJECT)
			jv_free(jv_object_get(jv_copy(data), jv_string("activity_type")));
		jv_free(type);
		jv_free(data);
	}
	jv_free(v);
}

static const size_t caps[] = { 1, 2, 7, 16, 64, 255, 1024, 65536 };

static uint32_t next_rand(uint32_t *st)
{
	/* xorshift32: deterministic per input, so a crash replays. */
	uint32_t x = *st ? *st : 0x9e3779b9u;
	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	*st = x;
	return x;
}

static struct seen run(const char *data, size_t n, size_t cap, uint32_t seed, bool parse)
{
	struct seen s = { .cap = cap, .events = 0, .hash = 0xcbf29ce484222325ULL, .parse = parse };
	struct sse p;
	sse_init(&p, cap, on_event, &s);
	size_t off = 0;
	uint32_t st = seed;
	while (off < n) {
		size_t chunk;
		if (!seed) {
			chunk = n - off;
		} else {
			uint32_t r = next_rand(&st);
			/* Mostly tiny pieces, sometimes empty ones, sometimes large. */
			chunk = (r & 7) == 0 ? 0 : (r & 7) < 6 ? (r >> 3) % 8 + 1 : (r >> 3) % 512 + 1;
			if (chunk > n - off)
				chunk = n - off;
		}
		sse_feed(&p, data + off, chunk);
		off += chunk;
	}
	/* Memory stays within about twice the cap. */
	CHECK(p.line.cap <= 2 * cap + 64 && p.data.cap <= 2 * cap + 64);
	sse_free(&p);
	return s;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	log_init(-1, false);
	jq16_init();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	size_t cap = caps[data[0] % (sizeof caps / sizeof *caps)];
	uint32_t seed = (uint32_t)data[1] * 2654435761u + 1;
	const char *text = (const char *)data + 2;
	size_t n = size - 2;

	struct seen whole = run(text, n, cap, 0, false);
	struct seen cut = run(text, n, cap, seed, true);
	CHECK(whole.events == cut.events);
	CHECK(whole.hash == cut.hash);
	return 0;
}
