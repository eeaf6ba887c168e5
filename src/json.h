/* json.h: JSON through libjq's jv: compact writing, one-line parse errors, safe field access. */
#ifndef MC_JSON_H
#define MC_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <jv.h>
#include "util.h"

/* The reason of a failed jv_parse (invalid consumed), on one line and without
 * the copy of the whole input libjq 1.6 appends (it may hold a secret, and it
 * may be huge). Caller frees. */
char *json_error(jv invalid);

/* Appends v (consumed) to b as compact JSON, byte for byte what
 * jv_dump_string(v, 0) writes, but in runs rather than a character at a
 * time through a growing jv string (a 1 MiB text took 40 ms that way). */
void json_write(struct buf *b, jv v);
/* The same into a new string (caller frees); its length in *len if not NULL. */
char *json_dump(jv v, size_t *len);

/* obj[key] (obj not consumed). jv_null() when obj is not an object or has no
 * such key, so a path through odd data simply ends in null and libjq's live
 * asserts are never reached. */
jv json_field(jv obj, const char *key);
/* obj has key (obj not consumed; false when obj is not an object). */
bool json_has(jv obj, const char *key);
/* obj[key] when it is a string, as a new C string (caller frees), else NULL. */
char *json_string_dup(jv obj, const char *key);
/* v (not consumed) is exactly a lower-case UUID string: also rejects a valid
 * UUID followed by a NUL and more, since ids end up in URLs and file names. */
bool json_is_uuid(jv v);

#endif
