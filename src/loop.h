/* loop.h: the event loop: one thread over libcurl's multi interface. */
#ifndef MC_LOOP_H
#define MC_LOOP_H

#include "settings.h"

/* Runs the bridge until shutdown. Returns the process exit status. */
int loop_run(struct settings *s);

#endif
