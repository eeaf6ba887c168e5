/* parts.h: A2A message parts: their kind, their text, and the one text part constructor. */
#ifndef MC_PARTS_H
#define MC_PARTS_H

#include <jv.h>

/* The "kind" of a part, or its "type" for older senders; NULL when part is not
 * an object or neither is a string. The pointer lives as long as part. */
const char *parts_kind(jv part /* not consumed */);

/* {"kind":"text","text":text}: the one way a text part is built. */
jv parts_text_part(const char *text);
/* The same from a jv string (consumed), which may hold NUL characters. */
jv parts_text_part_jv(jv text);

/* Joins the text of the text parts of an A2A parts array with "\n" (accepts
 * "kind" or "type"). Non-array input gives "". Caller frees. */
char *parts_text(jv parts /* not consumed */);
/* The same as a jv string, keeping any NUL characters in the text. */
jv parts_text_jv(jv parts /* not consumed */);

#endif
