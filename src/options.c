/* options.c: the options table, the command line read through it, and --help, --version, --dry-run. */
#include <config.h>

#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "options_internal.h"
#include "state.h"
#include "util.h"

#if LONG_MAX > 2147483647L
#define MAX_MESSAGES_MAX 2147483648L
#else
#define MAX_MESSAGES_MAX LONG_MAX
#endif

#define FIELD(f) offsetof(struct settings, f)

/* The one table: getopt_long's array, the defaults, the environment fallbacks
 * and --help all come from it. */
const struct option_spec options_specs[] = {
	{ .long_name = "api-url", .arg = "URL", .env = "MOLECULE_API_URL",
	  .dflt = "http://localhost:8080", .kind = K_API_URL,
	  .help = "platform base URL" },
	{ .long_name = "token-file", .arg = "FILE", .kind = K_TOKEN_FILE,
	  .help = "read the workspace token from the first line of FILE (mode 600)" },
	{ .long_name = "token", .arg = "TOKEN", .env = TOKEN_ENV, .kind = K_TOKEN,
	  .help = "workspace token (other users can see it in ps: prefer the environment)" },
	{ .long_name = "org-id", .arg = "ID", .env = "MOLECULE_ORG_ID",
	  .kind = K_STRING, .offset = FIELD(org_id),
	  .help = "tenant org id, sent as X-Molecule-Org-Id" },
	{ .long_name = "state-dir", .arg = "DIR", .kind = K_STRING, .offset = FIELD(state_dir),
	  .help = "cursor and unsent replies (default $XDG_CONFIG_HOME/molecule/state, "
		  "else ~/.config/molecule/state)" },
	{ .long_name = "interval", .arg = "SECS", .dflt = "1", .kind = K_SECONDS,
	  .offset = FIELD(interval), .min = 0.05, .max = 3600,
	  .help = "seconds between polls (0.05..3600)" },
	{ .long_name = "idle-interval", .arg = "SECS", .dflt = "5", .kind = K_SECONDS,
	  .offset = FIELD(idle_interval), .min = 0.05, .max = 3600,
	  .help = "seconds between polls after twelve of them brought nothing, "
		  "while no event stream wakes the bridge (0.05..3600)" },
	{ .long_name = "events", .arg = "MODE", .dflt = "auto", .kind = K_EVENTS,
	  .help = "the platform's event stream as a wake-up: auto (where the platform has it), on or off" },
	{ .long_name = "heartbeat", .arg = "SECS", .dflt = "30", .kind = K_SECONDS,
	  .offset = FIELD(heartbeat), .min = 1, .max = 3600,
	  .help = "seconds between heartbeats (1..3600)" },
	{ .long_name = "since-secs", .arg = "N", .dflt = "30", .kind = K_COUNT,
	  .offset = FIELD(since_secs), .min = 0, .max = 2592000,
	  .help = "backlog replayed on a first start, in seconds (0..2592000)" },
	{ .long_name = "max-file-size", .arg = "BYTES", .dflt = "104857600", .kind = K_COUNT,
	  .offset = FIELD(max_file_size), .min = 0, .max = 1073741824,
	  .help = "canvas uploads larger than BYTES are not fetched (0..1073741824)" },
	{ .long_name = "max-inflight", .arg = "N", .dflt = "16", .kind = K_COUNT,
	  .offset = FIELD(max_inflight), .min = 1, .max = 10000,
	  .help = "messages handed out and not yet done, at most (1..10000)" },
	{ .long_name = "name", .arg = "NAME", .dflt = PACKAGE_NAME, .kind = K_STRING,
	  .offset = FIELD(name),
	  .help = "agent card name" },
	{ .long_name = "agent-card", .arg = "FILE", .kind = K_AGENT_CARD,
	  .help = "agent card from a JSON object file (--name overrides its name)" },
	{ .long_name = "filter", .arg = "JQ", .kind = K_STRING, .offset = FIELD(filter),
	  .help = "jq program run on each message before it is written; no output skips it" },
	{ .long_name = "reply-filter", .arg = "JQ", .kind = K_STRING, .offset = FIELD(reply_filter),
	  .help = "jq program mapping each handler output line to a reply" },
	{ .long_name = "exec", .arg = "CMD", .kind = K_EXEC,
	  .help = "run the shell command CMD once per message" },
	{ .long_name = "exec-input", .arg = "MODE", .dflt = "text", .kind = K_EXEC_INPUT,
	  .help = "what --exec gets on stdin: text (the message text) or json (the message line)" },
	{ .long_name = "exec-timeout", .arg = "SECS", .dflt = "60", .kind = K_SECONDS,
	  .offset = FIELD(exec_timeout), .min = 0.1, .max = 86400,
	  .help = "kill an --exec command after SECS (0.1..86400)" },
	{ .long_name = "concurrency", .arg = "N", .dflt = "1", .kind = K_COUNT,
	  .offset = FIELD(concurrency), .min = 1, .max = 1024,
	  .help = "--exec commands running at once (1..1024)" },
	{ .long_name = "restart-limit", .arg = "N", .dflt = "5", .kind = K_COUNT,
	  .offset = FIELD(restart_limit), .min = 0, .max = 1000,
	  .help = "consecutive failed co-process restarts before giving up (0..1000)" },
	{ .long_name = "per", .arg = "KEY", .kind = K_STRING, .offset = FIELD(per),
	  .help = "one co-process (or one --exec command at a time) per conversation: peer or context" },
	{ .long_name = "max-procs", .arg = "N", .dflt = "8", .kind = K_COUNT,
	  .offset = FIELD(max_procs), .min = 1, .max = 256,
	  .help = "--per: co-processes alive at once (1..256)" },
	{ .long_name = "idle-exit", .arg = "SECS", .dflt = "600", .kind = K_SECONDS,
	  .offset = FIELD(idle_exit), .min = 0, .max = 86400,
	  .help = "--per: end the input of a co-process quiet for SECS, 0 never (0..86400)" },
	{ .long_name = "reply-timeout", .arg = "SECS", .kind = K_SECONDS,
	  .offset = FIELD(reply_timeout), .min = 0, .max = 86400,
	  .help = "restart a co-process that holds one message longer than SECS, 0 never (0..86400)" },
	{ .long_name = "once", .kind = K_FLAG, .offset = FIELD(once),
	  .help = "handle what is waiting now, drain and exit" },
	{ .long_name = "send", .kind = K_FLAG, .offset = FIELD(send),
	  .help = "post the {\"to\":...} lines of standard input as new messages, then exit" },
	{ .long_name = "post-timeout", .arg = "SECS", .dflt = "60", .kind = K_SECONDS,
	  .offset = FIELD(post_timeout), .min = 0.1, .max = 3600,
	  .help = "stop waiting for the answer to a post after SECS and post it again (0.1..3600)" },
	{ .long_name = "stall-report", .arg = "SECS", .dflt = "60", .kind = K_SECONDS,
	  .offset = FIELD(stall_report), .min = 0.1, .max = 86400,
	  .help = "while posts to a peer keep failing, warn every SECS (0.1..86400)" },
	{ .long_name = "max-messages", .arg = "N", .kind = K_COUNT, .offset = FIELD(max_messages),
	  .min = 1, .max = (double)MAX_MESSAGES_MAX,
	  .help = "exit after N messages are done (1..2147483648)" },
	{ .long_name = "drain-timeout", .arg = "SECS", .dflt = "10", .kind = K_SECONDS,
	  .offset = FIELD(drain_timeout), .min = 0, .max = 3600,
	  .help = "on shutdown, wait at most SECS for in-flight replies (0..3600)" },
	{ .long_name = "dry-run", .kind = K_FLAG, .offset = FIELD(dry_run),
	  .help = "print the resolved configuration and exit (no network, no state)" },
	{ .long_name = "allow-insecure-http", .kind = K_FLAG, .offset = FIELD(allow_insecure_http),
	  .help = "allow a plain http:// API URL that is not loopback" },
	{ .long_name = "log-format", .arg = "FORMAT", .dflt = "text", .kind = K_LOG_FORMAT,
	  .help = "stderr log lines: text or json" },
	{ .long_name = "verbose", .short_name = 'v', .kind = K_VERBOSE,
	  .help = "more log detail (repeatable)" },
	{ .long_name = "quiet", .short_name = 'q', .kind = K_QUIET,
	  .help = "errors only" },
	{ .long_name = "help", .short_name = 'h', .kind = K_HELP,
	  .help = "show this help and exit" },
	{ .long_name = "version", .short_name = 'V', .kind = K_VERSION,
	  .help = "show the version and exit" },
};

#define NSPECS (sizeof options_specs / sizeof options_specs[0])
const size_t options_nspecs = NSPECS;
_Static_assert(NSPECS <= OPTIONS_MAX, "struct parse has no room for every option");

static int spec_code(size_t i)
{
	return options_specs[i].short_name ? options_specs[i].short_name : 256 + (int)i;
}

bool options_given(const struct parse *p, const char *long_name)
{
	for (size_t i = 0; i < NSPECS; i++)
		if (strcmp(options_specs[i].long_name, long_name) == 0)
			return p->seen[i];
	return false;
}

enum parse_result options_usage_error(const char *fmt, ...)
				      {
				      va_list ap;
	va_start(ap, fmt);
	fputs(PROG ": ", stderr);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\nTry '" PROG " --help' for more information.\n", stderr);
	return PARSE_BAD;
}

enum parse_result options_config_error(const char *fmt, ...)
				       {
				       va_list ap;
	va_start(ap, fmt);
	fputs(PROG ": ", stderr);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return PARSE_BAD;
}

enum parse_result options_value_error(enum source src, const char *fmt, ...)
				      {
				      char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	return src == SRC_OPTION ? options_usage_error("%s", line) : options_config_error("%s", line);
}

void options_set_string(char **field, const char *value)
{
	free(*field);
	*field = xstrdup(value);
}

static void print_help(void);
static void print_version(void);

/* Applies one value of spec from src. */
enum parse_result options_apply(struct parse *p, const struct option_spec *spec, char *value, enum source src)
{
	struct settings *s = p->s;
	char what[64];
	if (src == SRC_ENV)
		snprintf(what, sizeof what, "%s", spec->env);
	else
		snprintf(what, sizeof what, "--%s", spec->long_name);
	char *base = (char *)s;

	switch (spec->kind) {
	case K_FLAG:
		*(bool *)(base + spec->offset) = true;
		break;
	case K_STRING:
		options_set_string((char **)(base + spec->offset), value);
		break;
	case K_SECONDS:
		if (parse_seconds(value, spec->min, spec->max, (double *)(base + spec->offset)) != 0)
			return options_value_error(src, "%s: '%s' is not a number of seconds from %g to %g",
						   what, value, spec->min, spec->max);
		break;
	case K_COUNT:
		if (parse_long(value, (long)spec->min, (long)spec->max, (long *)(base + spec->offset)) != 0)
			return options_value_error(src, "%s: '%s' is not a whole number from %.0f to %.0f",
						   what, value, spec->min, spec->max);
		break;
	case K_API_URL:
		return optvalue_api_url(s, what, value, src);
	case K_TOKEN:
		return optvalue_token(p, value, src);
	case K_TOKEN_FILE:
		options_set_string(&p->token_file, value);
		break;
	case K_AGENT_CARD:
		options_set_string(&p->agent_card_file, value);
		break;
	case K_LOG_FORMAT:
		if (strcmp(value, "text") != 0 && strcmp(value, "json") != 0)
			return options_value_error(src, "%s: '%s' is not a log format: use text or json", what, value);
		s->log_json = strcmp(value, "json") == 0;
		break;
	case K_EVENTS:
		if (strcmp(value, "auto") == 0)
			s->events = EVENTS_AUTO;
		else if (strcmp(value, "on") == 0)
			s->events = EVENTS_ON;
		else if (strcmp(value, "off") == 0)
			s->events = EVENTS_OFF;
		else
			return options_value_error(src, "%s: '%s' is not an events mode: use auto, on or off", what, value);
		break;
	case K_EXEC:
		if (!*value)
			return options_value_error(src, "%s: the command is empty", what);
		options_set_string(&s->exec, value);
		break;
	case K_EXEC_INPUT:
		if (strcmp(value, "text") == 0)
			s->exec_input = EXEC_INPUT_TEXT;
		else if (strcmp(value, "json") == 0)
			s->exec_input = EXEC_INPUT_JSON;
		else
			return options_value_error(src, "%s: '%s' is not an input mode: use text or json", what, value);
		break;
	case K_VERBOSE:
		p->verbose++;
		break;
	case K_QUIET:
		p->quiet = 1;
		break;
	case K_HELP:
		print_help();
		return PARSE_DONE;
	case K_VERSION:
		print_version();
		return PARSE_DONE;
	}
	return PARSE_GO_ON;
}

/* How many long options arg ("--xy" or "--xy=v") abbreviates: getopt_long
 * reports an unknown and an ambiguous option alike. */
static int prefix_matches(const char *arg)
{
	if (strncmp(arg, "--", 2) != 0)
		return 0;
	arg += 2;
	size_t len = strcspn(arg, "=");
	int n = 0;
	for (size_t i = 0; i < NSPECS; i++)
		if (strncmp(options_specs[i].long_name, arg, len) == 0)
			n++;
	return n;
}

/* Reads argv into p. The workspace id may sit among the options; what follows
 * a "--" is the co-process command (*command NULL when there is none). */
static enum parse_result command_line(struct parse *p, int argc, char **argv, const char **workspace_id,
				      char ***command, int *ncommand)
{
	enum parse_result rc = PARSE_GO_ON;
	/* "-": non-options come back in order as code 1, so the workspace id may sit
	 * among the options while everything after "--" is left for the command.
	 * ":": missing arguments are told apart from unknown options. */
	char shortopts[2 + 2 * NSPECS + 1];
	size_t ns = 0;
	shortopts[ns++] = '-';
	shortopts[ns++] = ':';
	struct option *longopts = xcalloc(NSPECS + 1, sizeof *longopts);
	for (size_t i = 0; i < NSPECS; i++) {
		longopts[i].name = options_specs[i].long_name;
		longopts[i].has_arg = options_specs[i].arg ? required_argument : no_argument;
		longopts[i].val = spec_code(i);
		if (options_specs[i].short_name) {
			shortopts[ns++] = options_specs[i].short_name;
			if (options_specs[i].arg)
				shortopts[ns++] = ':';
		}
	}
	shortopts[ns] = '\0';

	bool dashes = false;    /* parsing stopped at "--": a co-process command follows */
	opterr = 0;
	optind = 0; /* 0: a full reinitialisation in glibc, so a second call works too */
	while (rc == PARSE_GO_ON) {
		int before = optind > 0 ? optind : 1;
		int c = getopt_long(argc, argv, shortopts, longopts, NULL);
		if (c == -1) {
			/* Only a "--" getopt itself consumed counts, not one that was the
			 * argument of an option (--name --). */
			dashes = before < argc && strcmp(argv[before], "--") == 0;
			break;
		}
		if (c == 1) {
			if (!*workspace_id)
				*workspace_id = optarg;
			else
				rc = options_usage_error("unexpected argument '%s' (a co-process COMMAND goes after '--')",
							 optarg);
			continue;
		}
		if (c == ':' || c == '?') {
			const char *arg = argv[optind - 1];
			const char *name = NULL;
			for (size_t i = 0; i < NSPECS; i++)
				if (spec_code(i) == optopt)
					name = options_specs[i].long_name;
			if (c == ':')
				rc = options_usage_error("option '--%s' needs an argument", name ? name : "?");
			else if (name && strncmp(arg, "--", 2) == 0)
				rc = options_usage_error("option '--%s' does not take an argument", name);
			else if (optopt && optopt < 256)
				rc = options_usage_error("unknown option '-%c'", optopt);
			else
				rc = options_usage_error("%s option '%.*s'",
							 prefix_matches(arg) > 1 ? "ambiguous" : "unknown",
							 (int)strcspn(arg, "="), arg);
			continue;
		}
		for (size_t i = 0; i < NSPECS; i++)
			if (spec_code(i) == c) {
				p->seen[i] = true;
				rc = options_apply(p, &options_specs[i], optarg, SRC_OPTION);
				break;
			}
	}
	free(longopts);
	if (dashes) {
		*command = argv + optind;
		*ncommand = argc - optind;
	}
	return rc;
}

enum parse_result options_parse(int argc, char **argv, struct settings *s)
{
	memset(s, 0, sizeof *s);
	s->agent_card = jv_invalid();

	struct parse p = { .s = s };
	const char *workspace_id = NULL;
	char **command = NULL;
	int ncommand = 0;
	/* Options override the environment, which overrides the defaults. */
	enum parse_result rc = optresolve_defaults(&p);
	if (rc == PARSE_GO_ON)
		rc = command_line(&p, argc, argv, &workspace_id, &command, &ncommand);
	if (rc == PARSE_GO_ON)
		rc = optresolve_environment(&p);
	if (rc == PARSE_GO_ON)
		rc = optresolve_finish(&p, workspace_id, command, ncommand);
	free(p.token_file);
	free(p.agent_card_file);
	return rc;
}

static void print_help(void)
{
	printf("Usage: " PROG " [OPTIONS] WORKSPACE_ID\n"
	       "       " PROG " [OPTIONS] WORKSPACE_ID -- COMMAND [ARG...]\n"
	       "       " PROG " [OPTIONS] --exec 'SHELL COMMAND' WORKSPACE_ID\n"
	       "       " PROG " [OPTIONS] --send WORKSPACE_ID < LINES\n"
	       "\n"
	       "Bridges one Molecule workspace to a process: each inbound message is a JSON\n"
	       "line on stdout (or COMMAND's stdin), each reply a JSON line read back.\n"
	       "\n"
	       "Options:\n");
	char left[NSPECS][64];
	int width = 0;
	for (size_t i = 0; i < NSPECS; i++) {
		const struct option_spec *o = &options_specs[i];
		int n;
		if (o->short_name)
			n = snprintf(left[i], sizeof left[i], "  -%c, --%s%s%s", o->short_name,
				     o->long_name, o->arg ? " " : "", o->arg ? o->arg : "");
		else
			n = snprintf(left[i], sizeof left[i], "      --%s%s%s", o->long_name,
				     o->arg ? "=" : "", o->arg ? o->arg : "");
		if (n > width)
			width = n;
	}
	for (size_t i = 0; i < NSPECS; i++) {
		const struct option_spec *o = &options_specs[i];
		printf("%-*s  %s", width, left[i], o->help);
		if (o->env)
			printf(" [env %s]", o->env);
		if (o->dflt)
			printf(" [default %s]", o->dflt);
		putchar('\n');
	}
	printf("\nOptions override the environment, which overrides the defaults.\n"
	       "Exit status: 0 clean stop, 1 runtime error, 2 usage or configuration error,\n"
	       "3 the workspace was removed.\n"
	       "See " PROG "(1) for the message and reply formats and the delivery guarantees.\n");
}

static void print_version(void)
{
	printf(PROG " " PACKAGE_VERSION "\n%s\n", curl_version());
	printf("Copyright (c) the " PROG " authors.\n"
	       "License MIT: <https://opensource.org/licenses/MIT>.\n"
	       "This is free software: you are free to change and redistribute it.\n"
	       "There is NO WARRANTY, to the extent permitted by law.\n"
	       "Home page: <" PACKAGE_URL ">\n");
}

/* Free text (programs, commands) may hold newlines: JSON-quote it to keep one line. */
static void print_quoted(const char *key, const char *value)
{
	if (!value) {
		printf("%s: (none)\n", key);
		return;
	}
	jv dumped = jv_dump_string(jv_string(value), 0);
	printf("%s: %s\n", key, jv_string_value(dumped));
	jv_free(dumped);
}

void options_print(const struct settings *s)
{
	printf("workspace_id: %s\n", s->workspace_id);
	printf("api_url: %s\n", s->api_url);
	printf("token: %s\n", s->token ? "set" : "unset");
	printf("token_source: %s\n", s->token_source ? s->token_source : "(none)");
	printf("org_id: %s\n", s->org_id ? s->org_id : "(none)");
	printf("state_dir: %s\n", s->state_dir);
	char *path = state_path(s->state_dir, s->workspace_id);
	printf("state_file: %s\n", path);
	free(path);
	printf("interval: %g\n", s->interval);
	printf("idle_interval: %g\n", s->idle_interval);
	printf("events: %s\n", s->events == EVENTS_ON ? "on" : s->events == EVENTS_OFF ? "off" : "auto");
	printf("heartbeat: %g\n", s->heartbeat);
	printf("since_secs: %ld\n", s->since_secs);
	printf("max_file_size: %ld\n", s->max_file_size);
	printf("max_inflight: %ld\n", s->max_inflight);
	print_quoted("name", s->name);
	jv card = jv_dump_string(jv_copy(s->agent_card), 0);
	printf("agent_card: %s\n", jv_string_value(card));
	jv_free(card);
	print_quoted("filter", s->filter);
	print_quoted("reply_filter", s->reply_filter);
	printf("once: %s\n", s->once ? "true" : "false");
	printf("send: %s\n", s->send ? "true" : "false");
	printf("post_timeout: %g\n", s->post_timeout);
	printf("stall_report: %g\n", s->stall_report);
	if (s->max_messages)
		printf("max_messages: %ld\n", s->max_messages);
	else
		printf("max_messages: (no limit)\n");
	printf("drain_timeout: %g\n", s->drain_timeout);
	printf("allow_insecure_http: %s\n", s->allow_insecure_http ? "true" : "false");
	printf("log_format: %s\n", s->log_json ? "json" : "text");
	printf("verbosity: %d\n", s->verbosity);
	if (s->command) {
		jv argv = jv_array();
		for (char **a = s->command; *a; a++)
			argv = jv_array_append(argv, jv_string(*a));
		jv dumped = jv_dump_string(argv, 0);
		printf("mode: coprocess\ncommand: %s\n", jv_string_value(dumped));
		jv_free(dumped);
		printf("restart_limit: %ld\n", s->restart_limit);
		if (s->per)
			printf("per: %s\nmax_procs: %ld\nidle_exit: %g\n", s->per, s->max_procs, s->idle_exit);
		else
			printf("per: (none)\n");
		printf("reply_timeout: %g\n", s->reply_timeout);
	} else if (s->exec) {
		printf("mode: exec\n");
		print_quoted("exec", s->exec);
		printf("exec_input: %s\n", s->exec_input == EXEC_INPUT_JSON ? "json" : "text");
		printf("exec_timeout: %g\n", s->exec_timeout);
		printf("concurrency: %ld\n", s->concurrency);
		printf("per: %s\n", s->per ? s->per : "(none)");
	} else {
		printf("mode: filter\n");
	}
}

void settings_free(struct settings *s)
{
	free(s->workspace_id);
	free(s->api_url);
	if (s->token) {
		/* Not a guarantee against every copy, but no freed page keeps it. */
		memset(s->token, 0, strlen(s->token));
		free(s->token);
	}
	free(s->token_source);
	free(s->org_id);
	free(s->state_dir);
	free(s->name);
	jv_free(s->agent_card);
	free(s->filter);
	free(s->reply_filter);
	if (s->command)
		for (char **a = s->command; *a; a++)
			free(*a);
	free(s->command);
	free(s->exec);
	free(s->per);
	memset(s, 0, sizeof *s);
	s->agent_card = jv_invalid();
}
