/* state.h: the per-workspace state file: load, validate, atomic save, lock. */
#ifndef MC_STATE_H
#define MC_STATE_H

#include <jv.h>

/*
 * File: <dir>/<workspace_id>.json, mode 0600, in a 0700 directory.
 * {
 *   "workspace_id": "<uuid>",          (the Go client's field)
 *   "last_since_id": "<uuid>" | "",    (the Go client's field: the saved cursor; "" or absent: none)
 *   "done_seq": N,                     (the seq of the last done row: the cursor's, or the last
 *                                       one before the platform forgot the cursor; absent: unknown)
 *   "done_at": "<RFC 3339>",           (that row's created_at)
 *   "replay_from": "<RFC 3339>",       (where the first start's window began, while no row is done:
 *                                       a restart without a cursor reads back to it)
 *   "done_ids": ["<uuid>", ...],       (done above the cursor, this program only)
 *   "replies": [ {"id":"<row uuid>","path":"/workspaces/<uuid>/a2a|notify","body":{...}}, ... ],
 *                                       (read but not yet posted, in reading order; a new
 *                                        message has "outbound": true and its messageId as id)
 *   "auth_token": "<token>",           (only when the platform minted one at a registration)
 *   "auth_token_replaced": "<sha1>",   (the SHA-1, hex, of the token that one replaced)
 *   ...                                 (unknown fields are kept as they are)
 * }
 */

/* Creates dir (mode 0700, parents as needed) when missing and takes an exclusive,
 * non-blocking lock on <dir>/<workspace_id>.lock. Returns the lock fd (kept open
 * for the life of the process) or -1 with *err set (caller frees). A second
 * holder gets an error naming the lock file. */
int state_lock(const char *dir, const char *workspace_id, char **err);

/* Loads and validates the state file. Returns:
 *   1  loaded: *out is an object with every field above normalised
 *      (last_since_id a string, possibly ""; done_ids and replies arrays;
 *      done_seq, done_at and replay_from checked, absent when null);
 *   0  no file: *out is a fresh object for workspace_id;
 *  -1  unreadable or invalid: *out is jv_invalid(), *err says what and where
 *      (one line, never the token). */
int state_load(const char *dir, const char *workspace_id, jv *out, char **err);

/* Writes st (not consumed) to a temporary file in dir, fsyncs it, renames it over
 * the state file and fsyncs the directory. 0 on success, -1 with *err set; on
 * failure the old file is untouched and the temporary file removed. */
int state_save(const char *dir, const char *workspace_id, jv st, char **err);

/* The state file's path (caller frees). */
char *state_path(const char *dir, const char *workspace_id);

#endif
