/* uploads.h: canvas uploads: each file fetched into the state directory, acknowledged, and its message completed. */
#ifndef MC_UPLOADS_H
#define MC_UPLOADS_H

#include <stdint.h>

struct bridge;
struct upload;

/*
 * A chat_upload_receive row is a message whose file waits on the platform.
 * Before it is handed out the file is fetched (streamed to a temporary file,
 * then renamed) into <state-dir>/<workspace-id>/files/ as
 * "<file id>-<name made safe>" (directory 0700, file 0600), and the upload is
 * acknowledged; the message's "files" then lists it. A file already there
 * (fetched before a restart) is not fetched again. A failed fetch (network,
 * 5xx) is tried again with backoff while other messages go on. An upload
 * that expired (404), is refused, or is larger than --max-file-size is
 * reported and handed out without the file, a note in its text saying why.
 */
struct uploads {
	struct upload *list;     /* every file at work: waiting to be fetched, fetching, being acknowledged */
};

/* Starts work on new uploads and the fetches that are due. */
void uploads_tick(struct bridge *b, int64_t now);
/* Milliseconds until a fetch is due, or -1. */
int64_t uploads_next_wakeup(struct bridge *b, int64_t now);
/* Cancels every request and drops every file at work (at exit, while the HTTP
 * client is still there). */
void uploads_stop(struct bridge *b);

/* The file name an upload is stored under: "<file_id>-<name>" with '/',
 * control characters and a leading '.' replaced by '_', the name cut to
 * UPLOADS_NAME_MAX bytes on a character boundary, "upload" for none. Caller frees. */
#define UPLOADS_NAME_MAX 200
char *uploads_file_name(const char *file_id, const char *name);

#endif
