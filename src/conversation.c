/* conversation.c: under --per, a message's conversation, its key, session id and handler environment. */
#include <config.h>

#include <stdlib.h>
#include <string.h>

#include "conversation.h"
#include "inbox.h"
#include "json.h"
#include "util.h"

static bool is_system(const struct message *m)
{
	jv origin = json_field(m->line, "origin");
	bool sys = jv_get_kind(origin) == JV_KIND_STRING && strcmp(jv_string_value(origin), "system") == 0;
	jv_free(origin);
	return sys;
}

struct conv_id conv_of(enum per_by per, const struct message *m)
{
	if (per == PER_CONTEXT && m->context_id && *m->context_id)
		return (struct conv_id){ CONV_CONTEXT, m->context_id };
	if (is_system(m))
		return (struct conv_id){ CONV_SYSTEM, NULL };
	if (m->source_id)
		return (struct conv_id){ CONV_PEER, m->source_id };
	return (struct conv_id){ CONV_CANVAS, NULL };
}

bool conv_same(const struct conv_id *a, const struct conv_id *b)
{
	if (a->kind != b->kind)
		return false;
	if (!a->id || !b->id)
		return a->id == b->id;
	return strcmp(a->id, b->id) == 0;
}

/* Fit for an environment variable and a log line as it is. */
static bool plain(const char *s)
{
	size_t n = 0;
	for (; s[n]; n++)
		if ((unsigned char)s[n] < 0x20 || s[n] == 0x7f)
			return false;
	return n <= CONV_CONTEXT_ID_MAX;
}

char *conv_key(const char *workspace_id, const struct conv_id *c)
{
	switch (c->kind) {
	case CONV_CANVAS:
		return xstrdup("canvas");
	case CONV_SYSTEM:
		return xstrdup("system");
	case CONV_PEER:
		return xasprintf("peer:%s", c->id);
	case CONV_CONTEXT:
		break;
	}
	if (plain(c->id))
		return xasprintf("context:%s", c->id);
	char u[UUID_LEN + 1];
	if (!uuid_name(workspace_id, c->id, u))
		memcpy(u, "00000000-0000-0000-0000-000000000000", sizeof u);
	return xasprintf("context:~%s", u);
}

char **conv_env(const char *workspace_id, const char *key, const char *peer_id, const char *context_id)
{
	char session[UUID_LEN + 1];
	if (!uuid_name(workspace_id, key, session))
		session[0] = '\0';
	char **env = xcalloc(6, sizeof *env);
	env[0] = xasprintf("MOLECULE_WORKSPACE_ID=%s", workspace_id);
	env[1] = xasprintf("MOLECULE_CONVERSATION=%s", key);
	env[2] = xasprintf("MOLECULE_PEER_ID=%s", peer_id ? peer_id : "");
	env[3] = xasprintf("MOLECULE_CONTEXT_ID=%s", context_id && plain(context_id) ? context_id : "");
	env[4] = xasprintf("MOLECULE_SESSION_ID=%s", session);
	return env;
}

void conv_env_free(char **env)
{
	for (char **e = env; e && *e; e++)
		free(*e);
	free(env);
}
