/* options.h: the command line and environment into struct settings. */
#ifndef MC_OPTIONS_H
#define MC_OPTIONS_H

#include "settings.h"

/* Fills s from argv, the environment and defaults. Returns -1 when the run should
 * go on, or an exit status: 0 after --help/--version, 2 after a usage error (one
 * line naming the problem and "Try 'molecule-connect --help'" on stderr). */
int options_parse(int argc, char **argv, struct settings *s);
/* --dry-run: the resolved configuration on stdout, token only as set/unset. */
void options_print(const struct settings *s);
void settings_free(struct settings *s);

#endif
