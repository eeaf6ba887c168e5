/* rows.h: activity rows: the answer parsed, what each row is, their order, and message lines. */
#ifndef MC_ROWS_H
#define MC_ROWS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jv.h>

#include "timestamp.h"

/* Parses an activity answer: an array of rows, or jv_invalid_with_msg saying
 * what is wrong (one line). */
jv rows_parse(const char *body, size_t len);

/* ---- what a row is (docs/protocol.md, "What each row is") ---- */

enum row_kind {
	ROW_MESSAGE,    /* message/send from a peer, the canvas or the platform: handed out */
	ROW_UPLOAD,     /* chat_upload_receive: a canvas file, fetched, then handed out */
	ROW_ECHO,       /* notify: this workspace's own canvas reply, echoed */
	ROW_OWN,        /* delegate_result, or sent by this workspace: never answered (it would loop) */
	ROW_UNSERVABLE, /* tasks/get, tasks/cancel, message/stream, any other method: skipped with a log line */
};

/* What row (not consumed) is, for a workspace own_id. A row without a method
 * is taken for a message. */
enum row_kind rows_kind(jv row, const char *own_id);

/* ---- order ---- */

/* Where a row stands in the platform's order: (created_at, seq). */
struct row_key {
	bool has_at;      /* created_at parsed */
	struct ts at;
	int64_t seq;      /* -1: none (an older platform, or not a whole number >= 0) */
};

/* The key of row (not consumed). */
struct row_key rows_key(jv row);
/* Orders two keys: rows without a time first, then by time, then by seq
 * (none first). 0: the same place. */
int rows_key_cmp(const struct row_key *a, const struct row_key *b);
/* row's seq when it is a whole number from 0 to 2^53, else -1. */
int64_t rows_seq(jv row);
/* The same for a value (not consumed) on its own. */
int64_t rows_seq_number(jv v);

/* Sorts an array of rows (consumed) oldest first by rows_key_cmp; ties keep
 * their input order. Not an array: []. */
jv rows_sort(jv rows);

/* The rows of one page (consumed) oldest first, the order they are handed out
 * in. A page after a cursor already is; a replay by time (replay: there is no
 * cursor yet) comes newest first by the platform's contract and is sorted
 * with rows_sort. The one place that knows which pages need sorting. */
jv rows_oldest_first(jv rows, bool replay);

/* ---- message lines ---- */

/* Builds the message line for one activity row (row consumed):
 * {"id","seq","workspace_id","source_id","origin","peer_name","peer_role",
 *  "method","text","parts","files","message_id","context_id","delegation_id",
 *  "created_at","request"}
 * origin: "agent" from a peer, "system" for a turn the platform started (see
 * rows_is_system), else "canvas"; a canvas upload is "canvas" too. text joins
 * the text parts (kind or type). files is [] (the upload code fills it).
 * Missing pieces become null ("parts": [] when none). Never aborts on odd
 * input: checks every kind first. Returns jv_invalid_with_msg on a row that is
 * not an object, whose id is not a UUID, or whose source_id is neither a UUID
 * nor null. */
jv rows_message(jv row, const char *own_id);

/* A row with no source (not consumed) is a turn the platform itself started:
 * metadata.source_type starting with "self-", or metadata.source naming a
 * caller other than the canvas ("platform", a webhook, a channel). Looked for
 * in params.metadata, then in params.message.metadata. */
bool rows_is_system(jv row);

/* A short printable rendering of v (not consumed) for a log line: compact
 * JSON, cut to 63 bytes on a character boundary. */
jv rows_describe(jv v);

#endif
