/* optresolve.c: settings resolved after the command line: defaults, the environment, the final checks. */
#include <config.h>

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "options_internal.h"
#include "util.h"

enum parse_result optresolve_defaults(struct parse *p)
{
	enum parse_result rc = PARSE_GO_ON;
	for (size_t i = 0; i < options_nspecs && rc == PARSE_GO_ON; i++)
		if (options_specs[i].dflt)
			rc = options_apply(p, &options_specs[i], (char *)options_specs[i].dflt, SRC_DEFAULT);
	return rc;
}

enum parse_result optresolve_environment(struct parse *p)
{
	/* --token-file also stands in for the token variable. */
	enum parse_result rc = PARSE_GO_ON;
	for (size_t i = 0; i < options_nspecs && rc == PARSE_GO_ON; i++) {
		const char *value = options_specs[i].env ? getenv(options_specs[i].env) : NULL;
		if (!value || !*value || p->seen[i])
			continue;
		if (options_specs[i].kind == K_TOKEN && options_given(p, "token-file"))
			continue;
		rc = options_apply(p, &options_specs[i], (char *)value, SRC_ENV);
	}
	return rc;
}

static enum parse_result resolve_state_dir(struct settings *s)
{
	if (!s->state_dir) {
		const char *xdg = getenv("XDG_CONFIG_HOME");
		const char *home = getenv("HOME");
		/* The same rule as Go's os.UserConfigDir, so both clients share the file. */
		if (xdg && *xdg)
			s->state_dir = xasprintf("%s/molecule/state", xdg);
		else if (home && *home)
			s->state_dir = xasprintf("%s/.config/molecule/state", home);
		else
			return options_config_error("no state directory: set --state-dir, XDG_CONFIG_HOME or HOME");
	}
	size_t len = strlen(s->state_dir);
	if (len == 0)
		return options_usage_error("--state-dir: the directory name is empty");
	while (len > 1 && s->state_dir[len - 1] == '/')
		s->state_dir[--len] = '\0';
	return PARSE_GO_ON;
}

/* --per and the options that only make sense with a co-process or with --per. */
static enum parse_result resolve_per(struct parse *p)
{
	struct settings *s = p->s;
	if (s->per) {
		if (strcmp(s->per, "peer") == 0)
			s->per_by = PER_PEER;
		else if (strcmp(s->per, "context") == 0)
			s->per_by = PER_CONTEXT;
		else
			return options_usage_error("--per: '%s' is not a conversation key: use peer or context", s->per);
		if (!s->command && !s->exec)
			return options_usage_error("--per needs a co-process ('-- COMMAND') or --exec");
	}
	if (!s->per && (options_given(p, "max-procs") || options_given(p, "idle-exit")))
		return options_usage_error("--%s only applies with --per", options_given(p, "max-procs") ? "max-procs" : "idle-exit");
	if (s->reply_timeout > 0 && !s->command)
		return options_usage_error("--reply-timeout applies to a co-process ('-- COMMAND'); --exec has --exec-timeout");
	return PARSE_GO_ON;
}

enum parse_result optresolve_finish(struct parse *p, const char *workspace_id, char **command, int ncommand)
{
	struct settings *s = p->s;
	enum parse_result rc;

	if (!workspace_id)
		return options_usage_error("missing WORKSPACE_ID");
	if (!uuid_valid(workspace_id)) {
		char *lower = xstrdup(workspace_id);
		for (char *c = lower; *c; c++)
			*c = (char)tolower((unsigned char)*c);
		bool only_case = uuid_valid(lower);
		free(lower);
		if (only_case)
			return options_usage_error("'%s' is not a workspace id: expected a lower-case UUID "
						   "(the platform compares ids as written)", workspace_id);
		return options_usage_error("'%.80s' is not a workspace id: expected a lower-case UUID "
					   "(xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx, hex digits a-f0-9)",
					   workspace_id);
	}
	s->workspace_id = xstrdup(workspace_id);

	if (command) {
		if (ncommand == 0)
			return options_usage_error("no COMMAND after '--'");
		if (s->exec)
			return options_usage_error("--exec and '-- COMMAND' are exclusive: choose one backend");
		s->command = xcalloc((size_t)ncommand + 1, sizeof *s->command);
		for (int i = 0; i < ncommand; i++)
			s->command[i] = xstrdup(command[i]);
	}
	if ((rc = resolve_per(p)) != PARSE_GO_ON)
		return rc;
	if (s->send && (s->command || s->exec))
		return options_usage_error("--send posts lines and exits: it takes no handler (--exec or '-- COMMAND')");
	if (p->verbose && p->quiet)
		return options_usage_error("--verbose and --quiet are exclusive");
	s->verbosity = p->quiet ? -1 : p->verbose;
	if (s->org_id && !optvalue_header_safe(s->org_id))
		return options_config_error("the org id contains a space or control character");
	if (options_given(p, "token") && options_given(p, "token-file"))
		return options_usage_error("--token and --token-file are exclusive");

	if (p->token_file) {
		char *token = NULL;
		if ((rc = optvalue_token_file(p->token_file, &token)) != PARSE_GO_ON)
			return rc;
		free(s->token);
		s->token = token;
		options_set_string(&s->token_source, "file");
	}
	if ((rc = optvalue_transport(s)) != PARSE_GO_ON)
		return rc;
	if ((rc = resolve_state_dir(s)) != PARSE_GO_ON)
		return rc;
	return optvalue_agent_card(p);
}
