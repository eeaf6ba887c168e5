/* test_conversation.c: under --per, the conversation of a message, its key, session id and environment. */
#include <config.h>

#include <stdlib.h>
#include <string.h>

#include "conversation.h"
#include "inbox.h"
#include "tap.h"

#define WS "123e4567-e89b-42d3-a456-426614174000"
#define PEER "0b6f9bd2-3c1e-4a55-9a8e-6f0f2a1c9d10"

/* A message as the inbox holds it: its sender, context and line. */
static struct message msg(const char *source, const char *context, const char *origin)
{
	struct message m;
	memset(&m, 0, sizeof m);
	m.source_id = (char *)source;
	m.context_id = (char *)context;
	m.line = jv_object_set(jv_object(), jv_string("origin"), jv_string(origin));
	return m;
}

static void key_is(enum per_by per, struct message m, const char *want, const char *name)
{
	struct conv_id c = conv_of(per, &m);
	char *k = conv_key(WS, &c);
	is_str(k, want, name);
	free(k);
	jv_free(m.line);
}

int main(void)
{
	key_is(PER_PEER, msg(PEER, "ctx-1", "agent"), "peer:" PEER, "peer: a peer's message, whatever its context");
	key_is(PER_PEER, msg(NULL, "ctx-1", "canvas"), "canvas", "peer: the canvas is one conversation");
	key_is(PER_PEER, msg(NULL, NULL, "system"), "system", "peer: the platform's own turns are one apart");
	key_is(PER_CONTEXT, msg(PEER, "ctx-1", "agent"), "context:ctx-1", "context: by context id");
	key_is(PER_CONTEXT, msg(NULL, "ctx-1", "canvas"), "context:ctx-1", "context: a canvas message with a context");
	key_is(PER_CONTEXT, msg(PEER, NULL, "agent"), "peer:" PEER, "context: none, so by peer");
	key_is(PER_CONTEXT, msg(PEER, "", "agent"), "peer:" PEER, "context: an empty one is none");
	key_is(PER_CONTEXT, msg(NULL, NULL, "canvas"), "canvas", "context: none, from the canvas");

	/* A context id that cannot go into an environment variable as it is. */
	char longid[CONV_CONTEXT_ID_MAX + 2];
	memset(longid, 'x', sizeof longid - 1);
	longid[sizeof longid - 1] = '\0';
	struct message m = msg(PEER, longid, "agent");
	struct conv_id c = conv_of(PER_CONTEXT, &m);
	char *k = conv_key(WS, &c);
	ok(strncmp(k, "context:~", 9) == 0 && uuid_valid(k + 9), "a long context id is keyed by its UUID: %s", k);
	free(k);
	jv_free(m.line);
	m = msg(PEER, "two\nlines", "agent");
	c = conv_of(PER_CONTEXT, &m);
	k = conv_key(WS, &c);
	ok(strncmp(k, "context:~", 9) == 0, "a context id with a newline is keyed by its UUID: %s", k);
	free(k);
	jv_free(m.line);

	struct conv_id a = { CONV_PEER, PEER }, b = { CONV_PEER, PEER }, cv = { CONV_CANVAS, NULL };
	struct conv_id ctx = { CONV_CONTEXT, PEER };
	ok(conv_same(&a, &b), "the same peer is the same conversation");
	ok(!conv_same(&a, &cv), "a peer is not the canvas");
	ok(!conv_same(&a, &ctx), "a context named like a peer is another conversation");

	char **env = conv_env(WS, "peer:" PEER, PEER, NULL);
	is_str(env[0], "MOLECULE_WORKSPACE_ID=" WS, "environment: the workspace");
	is_str(env[1], "MOLECULE_CONVERSATION=peer:" PEER, "environment: the key");
	is_str(env[2], "MOLECULE_PEER_ID=" PEER, "environment: the peer");
	is_str(env[3], "MOLECULE_CONTEXT_ID=", "environment: no context");
	/* uuid5(WS, "peer:" PEER), as Python's uuid.uuid5 computes it. */
	is_str(env[4], "MOLECULE_SESSION_ID=3972a1d5-ebf2-54fc-8cc9-25b6d6ccd1a6", "environment: the session id");
	ok(env[5] == NULL, "environment: five variables");
	conv_env_free(env);
	env = conv_env(WS, "context:ctx-1", NULL, "ctx-1");
	is_str(env[2], "MOLECULE_PEER_ID=", "environment: the canvas has no peer id");
	is_str(env[3], "MOLECULE_CONTEXT_ID=ctx-1", "environment: the context");
	char **again = conv_env(WS, "context:ctx-1", PEER, "ctx-1");
	is_str(again[4], env[4], "the session id depends on the key only");
	conv_env_free(again);
	conv_env_free(env);
	return done_testing();
}
