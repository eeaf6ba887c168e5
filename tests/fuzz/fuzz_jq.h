/* fuzz_jq.h: what the fuzz targets share: a check macro and a way around
 * libjq 1.6's parser leak, so LeakSanitizer reports only this program's.
 *
 * jq 1.6's parser loses a string when a value follows another one without a
 * separator inside an array or object (value() in jv_parse.c returns "Expected
 * separator between values" without freeing it): `{"a":"x" "b":1}` leaks "b".
 * The leak is inside libjq (fixed in jq 1.7); the bridge parses every reply
 * line, every activity answer and the state file with it.
 *
 * jq16_parse_leaks() parses the input first while watching every allocation
 * (sanitizer malloc/free hooks); what is still allocated once the result is
 * freed is what libjq lost: it is freed here, so the heap stays balanced (an
 * unbalanced run makes libFuzzer scan the whole heap for leaks, ten times
 * slower), and the target leaves that input (or line) out instead of handing
 * it to the code under test. Only the calling thread's allocations are watched.
 * Call jq16_init() once, from LLVMFuzzerInitialize. */
#ifndef MC_FUZZ_JQ_H
#define MC_FUZZ_JQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jv.h>
#include <sanitizer/allocator_interface.h>

#define CHECK(cond) do { if (!(cond)) __builtin_trap(); } while (0)

/* Live allocations made while watching: an open-addressing set of pointers. */
#define JQ16_SLOTS (1u << 16)
#define JQ16_TOMB ((uintptr_t)1)
static uintptr_t jq16_live[JQ16_SLOTS];
static uint32_t jq16_touched[JQ16_SLOTS / 2]; /* slots used, to reset only those */
static size_t jq16_count, jq16_used;
static bool jq16_overflow;
/* Per thread: libFuzzer's RSS thread allocates too (pthread_getattr_np), and
 * a block of its own must never be taken for one libjq lost. */
static _Thread_local bool jq16_watching;

static inline size_t jq16_slot(uintptr_t p)
{
	return (size_t)((p >> 4) * 0x9e3779b97f4a7c15ULL >> 47) & (JQ16_SLOTS - 1);
}

static void jq16_on_malloc(const volatile void *ptr, size_t size)
{
	(void)size;
	if (!jq16_watching || !ptr)
		return;
	if (jq16_used >= JQ16_SLOTS / 2) {
		jq16_overflow = true;
		return;
	}
	uintptr_t p = (uintptr_t)ptr;
	size_t i = jq16_slot(p);
	while (jq16_live[i] && jq16_live[i] != JQ16_TOMB)
		i = (i + 1) & (JQ16_SLOTS - 1);
	if (!jq16_live[i])
		jq16_touched[jq16_used++] = (uint32_t)i;
	jq16_live[i] = p;
	jq16_count++;
}

static void jq16_on_free(const volatile void *ptr)
{
	if (!jq16_watching || !ptr)
		return;
	uintptr_t p = (uintptr_t)ptr;
	for (size_t i = jq16_slot(p); jq16_live[i]; i = (i + 1) & (JQ16_SLOTS - 1))
		if (jq16_live[i] == p) {
			jq16_live[i] = JQ16_TOMB;
			jq16_count--;
			return;
		}
}

static inline void jq16_init(void)
{
	CHECK(__sanitizer_install_malloc_and_free_hooks(jq16_on_malloc, jq16_on_free) != 0);
}

/* True when parsing p[0..n) loses memory inside libjq. p[n] must be '\0'
 * (jq 1.6 quotes the input in its error message with "%s"). */
static inline bool jq16_parse_leaks(const char *p, size_t n)
{
	jq16_count = 0;
	jq16_overflow = false;
	jq16_watching = true;
	jv v = jv_parse_sized(p, (int)n);
	if (!jv_is_valid(v))
		v = jv_invalid_get_msg(v);
	jv_free(v);
	jq16_watching = false;
	/* Too many at once to track: cannot tell, keep the input. */
	bool leaked = !jq16_overflow && jq16_count > 0;
	for (size_t k = 0; k < jq16_used; k++) {
		uintptr_t *slot = &jq16_live[jq16_touched[k]];
		if (leaked && *slot > JQ16_TOMB)
			free((void *)*slot);
		*slot = 0;
	}
	jq16_used = 0;
	return leaked;
}

#endif
