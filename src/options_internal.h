/* options_internal.h: what the three options files share: the table's shape, the parse record, error reporting. */
#ifndef MC_OPTIONS_INTERNAL_H
#define MC_OPTIONS_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "options.h"

#define PROG PACKAGE_NAME
#define TOKEN_ENV "MOLECULE_WORKSPACE_TOKEN"

/* How an option's value is applied. The first four kinds are generic and go
 * through offset; the rest are handled one by one in options_apply(). */
enum arg_kind {
	K_FLAG,         /* bool field set to true */
	K_STRING,       /* char * field, replaced */
	K_SECONDS,      /* double field, parse_seconds within [min, max] */
	K_COUNT,        /* long field, parse_long within [min, max] */
	K_API_URL,
	K_TOKEN,
	K_TOKEN_FILE,
	K_AGENT_CARD,
	K_LOG_FORMAT,
	K_EVENTS,
	K_EXEC,
	K_EXEC_INPUT,
	K_VERBOSE,
	K_QUIET,
	K_HELP,
	K_VERSION,
};

struct option_spec {
	const char *long_name;
	char short_name;        /* 0: long form only */
	const char *arg;        /* argument name in --help; NULL: takes no argument */
	const char *env;        /* environment fallback, or NULL */
	const char *dflt;       /* applied before parsing and shown in --help, or NULL */
	const char *help;
	enum arg_kind kind;
	size_t offset;          /* field of struct settings, generic kinds only */
	double min, max;        /* range of the numeric kinds */
};

/* The one table (options.c). */
extern const struct option_spec options_specs[];
extern const size_t options_nspecs;
#define OPTIONS_MAX 48          /* room in struct parse; options.c checks the table fits */

enum source { SRC_DEFAULT, SRC_OPTION, SRC_ENV };

/* What parsing needs beyond the settings themselves. */
struct parse {
	struct settings *s;
	bool seen[OPTIONS_MAX]; /* given on the command line, by table index */
	char *token_file;       /* read once every option is known */
	char *agent_card_file;
	int verbose, quiet;
};

/* ---- options.c: the table, the command line, reporting ---- */

/* Applies one value of spec from src. */
enum parse_result options_apply(struct parse *p, const struct option_spec *spec, char *value, enum source src);
/* The option named long_name was given on the command line. */
bool options_given(const struct parse *p, const char *long_name);
void options_set_string(char **field, const char *value);
/* One line on stderr, then PARSE_BAD. A usage error adds the --help hint; a
 * configuration problem (files, environment) says what to fix instead. */
enum parse_result options_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
enum parse_result options_config_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* An error in a value: after an option it is a usage error, from the
 * environment a configuration one. */
enum parse_result options_value_error(enum source src, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- optvalue.c: values checked and read ---- */

/* --api-url: http(s), no spaces, a host; trailing slashes dropped. */
enum parse_result optvalue_api_url(struct settings *s, const char *what, const char *value, enum source src);
/* --token or the environment: trimmed, header-safe; an option's copy in argv is blanked. */
enum parse_result optvalue_token(struct parse *p, char *value, enum source src);
/* The first line of the token file at path, trimmed, into *out (mode 0600 or stricter). */
enum parse_result optvalue_token_file(const char *path, char **out);
/* The card from --agent-card (or an empty one), with name, description and
 * version filled in. */
enum parse_result optvalue_agent_card(struct parse *p);
/* Plain http only to this machine, unless --allow-insecure-http. */
enum parse_result optvalue_transport(const struct settings *s);
/* Tokens and org ids go into HTTP headers: visible ASCII only, not empty. */
bool optvalue_header_safe(const char *t);

/* ---- optresolve.c: defaults, environment, and the checks at the end ---- */

/* The table's defaults, applied before the command line is read. */
enum parse_result optresolve_defaults(struct parse *p);
/* The environment fills what the command line left. */
enum parse_result optresolve_environment(struct parse *p);
/* Checks what only makes sense once every option is known, and reads the
 * files they name. */
enum parse_result optresolve_finish(struct parse *p, const char *workspace_id, char **command, int ncommand);

#endif
