/* jqprog.h: a compiled jq program (--filter, --reply-filter) run through libjq. */
#ifndef MC_JQPROG_H
#define MC_JQPROG_H

#include <stdbool.h>
#include <jv.h>

struct jqprog;

/* Compiles program. NULL and *err set (one line, with the position libjq gives)
 * on a syntax or compile error. The library path is empty: no modules load. */
struct jqprog *jqprog_compile(const char *program, char **err);

/* Runs the program on input (consumed). Returns an array of every output value;
 * [] when it produced nothing; jv_invalid_with_msg (string) on a runtime error. */
jv jqprog_run(struct jqprog *p, jv input);
/* The same, but stops after max outputs (0: no limit) and sets *cut when there
 * would have been more: a generator like range(1e9) must not stall the bridge. */
jv jqprog_run_capped(struct jqprog *p, jv input, int max, bool *cut);

void jqprog_free(struct jqprog *p);

#endif
