/* options.h: the command line and environment into struct settings. */
#ifndef MC_OPTIONS_H
#define MC_OPTIONS_H

#include "settings.h"

/* What parsing decided. Every error has already been reported on stderr in
 * one line naming the problem (a usage error adds "Try 'molecule-connect
 * --help'"). */
enum parse_result {
	PARSE_GO_ON,  /* the settings are complete: run */
	PARSE_DONE,   /* --help or --version was printed: exit with MC_EXIT_OK */
	PARSE_BAD,    /* a usage or configuration error: exit with MC_EXIT_USAGE */
};

/* Fills s from argv, the environment and defaults. s is always safe to
 * settings_free, whatever the result. */
enum parse_result options_parse(int argc, char **argv, struct settings *s);
/* --dry-run: the resolved configuration on stdout, token only as set/unset. */
void options_print(const struct settings *s);
void settings_free(struct settings *s);

#endif
