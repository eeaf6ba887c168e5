/* rows.h: activity rows: the answer parsed, in the order they happened, as message lines. */
#ifndef MC_ROWS_H
#define MC_ROWS_H

#include <stdbool.h>
#include <stddef.h>
#include <jv.h>

/* Parses an activity answer: an array of rows, or jv_invalid_with_msg saying
 * what is wrong (one line). */
jv rows_parse(const char *body, size_t len);

/* The rows of one page (consumed) oldest first, the order they are handed out
 * in. A page after a cursor already is; a replay by time (replay: there is no
 * cursor yet) comes newest first by the platform's contract and is sorted
 * with rows_sort. The one place that knows which pages need sorting. */
jv rows_oldest_first(jv rows, bool replay);

/* Sorts an array of rows by created_at ascending (rows_timestamp_cmp; rows
 * without one go first), stable: equal timestamps keep their input order.
 * Consumed. Not an array: []. */
jv rows_sort(jv rows);

/* Orders two RFC 3339 timestamps of the same zone: strcmp, except that the
 * fractions of a second compare as numbers (Go trims their trailing zeros, so
 * "10:00:02Z" < "10:00:02.5Z" and "...02.12Z" < "...02.123Z"). */
int rows_timestamp_cmp(const char *a, const char *b);

/* Builds the message line for one activity row (row consumed):
 * {"id","workspace_id","source_id","origin","method","text","parts","message_id",
 *  "context_id","task_id","created_at","request"}
 * origin: "canvas" when source_id is null, else "agent". text joins the text parts
 * (kind or type). Missing pieces become null ("parts": [] when none). Never aborts
 * on odd input: checks every kind first. Returns jv_invalid_with_msg on a row that
 * is not an object or whose id is not a UUID. */
jv rows_message(jv row, const char *own_id);

#endif
