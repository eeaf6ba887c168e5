/* conversation.h: under --per, the conversation a message belongs to, its key, its session id, its handler's environment. */
#ifndef MC_CONVERSATION_H
#define MC_CONVERSATION_H

#include <stdbool.h>

#include "settings.h"

struct message;

enum conv_kind {
	CONV_CANVAS,   /* the people in the canvas: one conversation */
	CONV_SYSTEM,   /* the platform's own turns: one conversation, apart from the canvas */
	CONV_PEER,     /* one sending workspace */
	CONV_CONTEXT,  /* one A2A context (--per context) */
};

/* Which conversation: a kind, and the peer's or the context's id (NULL for the
 * canvas and the system). id is borrowed from the message or its owner. */
struct conv_id {
	enum conv_kind kind;
	const char *id;
};

/* Longer context ids (or ones with control characters) are keyed by their
 * name-based UUID: the key goes into the handler's environment. */
#define CONV_CONTEXT_ID_MAX 200

/* The conversation of m under per (PER_PEER or PER_CONTEXT): its context id when
 * per is PER_CONTEXT and it has one, else its sender; the platform's own turns
 * are the system's. */
struct conv_id conv_of(enum per_by per, const struct message *m);
bool conv_same(const struct conv_id *a, const struct conv_id *b);
/* The key (caller frees): "peer:<id>", "canvas", "system", "context:<id>", or
 * "context:~<uuid>" for a context id that cannot be written as it is. */
char *conv_key(const char *workspace_id, const struct conv_id *c);
/* The environment a conversation's handler gets on top of the bridge's
 * (NULL-terminated; free with conv_env_free): MOLECULE_WORKSPACE_ID,
 * MOLECULE_CONVERSATION (key), MOLECULE_PEER_ID and MOLECULE_CONTEXT_ID (empty
 * when none), MOLECULE_SESSION_ID (the version 5 UUID of key in the workspace's
 * namespace: the same for the same conversation, across restarts). */
char **conv_env(const char *workspace_id, const char *key, const char *peer_id, const char *context_id);
void conv_env_free(char **env);

#endif
