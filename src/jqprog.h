/* jqprog.h: a compiled jq program (--filter, --reply-filter) run through libjq. */
#ifndef MC_JQPROG_H
#define MC_JQPROG_H

#include <jv.h>

struct jqprog;

/* Compiles program. NULL and *err set (one line, with the position libjq gives)
 * on a syntax or compile error. The library path is empty: no modules load. */
struct jqprog *jqprog_compile(const char *program, char **err);

/* Runs the program on input (consumed). Returns an array of every output value;
 * [] when it produced nothing; jv_invalid_with_msg (string) on a runtime error. */
jv jqprog_run(struct jqprog *p, jv input);

void jqprog_free(struct jqprog *p);

#endif
