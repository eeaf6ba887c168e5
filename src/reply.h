/* reply.h: reply lines from the handler: what a parsed line asks for, validated. */
#ifndef MC_REPLY_H
#define MC_REPLY_H

#include <stdbool.h>
#include <stddef.h>
#include <jv.h>

enum reply_kind {
	REPLY_TEXT,   /* {"id","text"}: parts holds one text part */
	REPLY_PARTS,  /* {"id","parts":[...]} */
	REPLY_ACK,    /* {"id"}: done, nothing to say */
	REPLY_ERROR,  /* {"id","error":"..."} */
	REPLY_RETRY,  /* {"id","retry":true} */
	REPLY_SEND,   /* {"to","text"|"parts","context_id"?}: a new message, not a reply */
};

struct reply {
	enum reply_kind kind;
	char *id;      /* NULL: answers the oldest unanswered message */
	jv parts;      /* TEXT/PARTS/SEND: array of A2A parts; else jv_null() */
	char *error;   /* ERROR: the handler's message; else NULL */
	char *to;      /* SEND: a peer's id (a lower-case UUID) or NULL for "canvas" */
	char *context_id; /* SEND: the conversation to carry on, or NULL */
};

/* Validates one parsed reply value (consumed). 0 and *out filled, or -1 and *err
 * set to a one-line reason (caller frees); *out is always safe to reply_free. Rules: must be an object; "id", when
 * present, a non-empty string; "text" a string; "parts" a non-empty array of
 * objects; "error" a string; "retry" true; "text" and "parts" not both;
 * "error"/"retry" exclusive with text/parts. Unknown keys are ignored.
 * "retry": false is the same as no "retry". A reply without "id" must carry
 * "text", "parts" or "error". An invalid v (a parse error) gives its message.
 * A line with "to" is a new message: "to" a lower-case UUID or "canvas", "text"
 * or "parts" (one of them), "context_id" a string if present, and no "id",
 * "error" or "retry". */
int reply_parse(jv v, struct reply *out, char **err);
void reply_free(struct reply *r);
/* What a reply of this kind asks for, in a few words, for log lines. */
const char *reply_kind_name(enum reply_kind kind);

#endif
