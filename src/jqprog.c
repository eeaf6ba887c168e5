/* jqprog.c: compiles and runs the user's jq programs (--filter, --reply-filter) with libjq. */
#include <config.h>

#include "jqprog.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <jq.h>

#include "util.h"

struct jqprog {
	jq_state *jq;
	bool compiling;
	char *compile_error; /* the first line libjq reported while compiling */
};

/* A message as text: strings as they are, anything else as compact JSON. */
static char *message_text(jv msg /* consumed */)
{
	char *s;
	if (jv_get_kind(msg) == JV_KIND_STRING) {
		s = xstrdup(jv_string_value(msg));
		jv_free(msg);
	} else {
		jv d = jv_dump_string(msg, 0);
		s = xstrdup(jv_string_value(d));
		jv_free(d);
	}
	return s;
}

/* libjq reports a compile error as "jq: error: ... line 1:\n<program text>",
 * then "jq: N compile error". Keep the first line of the first message: it
 * names the problem and its place, and the caller logs one line. Without this
 * callback libjq would print to stderr itself. */
static void on_error(void *data, jv msg)
{
	struct jqprog *p = data;
	if (!p->compiling || p->compile_error) {
		jv_free(msg);
		return;
	}
	char *text = message_text(msg);
	text[strcspn(text, "\n")] = '\0';
	p->compile_error = text;
}

/* No `input`/`inputs` data: each run sees exactly one value. Without a
 * callback libjq 1.6 fails `input` with a puzzling "break". */
static jv no_input(jq_state *jq, void *data)
{
	(void)jq;
	(void)data;
	return jv_invalid();
}

/* libjq 1.6's reset frees the exit code and message of a halt without
 * forgetting them, so the reset after the next run frees them again (a
 * use-after-free once a `halt_error` run is followed by two more runs). A
 * throwaway start frees them while they are still ours, and a halt with two
 * invalid values, which are safe to free any number of times, replaces them. */
static void forget_halt(jq_state *jq)
{
	jq_start(jq, jv_null(), 0);
	jq_halt(jq, jv_invalid(), jv_invalid());
}

struct jqprog *jqprog_compile(const char *program, char **err)
{
	if (err)
		*err = NULL;
	jq_state *jq = jq_init();
	if (!jq) {
		if (err)
			*err = xstrdup("jq: cannot initialise libjq");
		return NULL;
	}
	struct jqprog *p = xcalloc(1, sizeof *p);
	p->jq = jq;
	/* Both callbacks and the library path go in before compiling: an
	 * unset JQ_LIBRARY_PATH makes libjq 1.6 search ~/.jq and friends, so a
	 * file in the user's home could change what the program does. */
	jq_set_error_cb(jq, on_error, p);
	jq_set_input_cb(jq, no_input, NULL);
	jq_set_attr(jq, jv_string("JQ_LIBRARY_PATH"), jv_array());

	p->compiling = true;
	int compiled = jq_compile(jq, program);
	p->compiling = false;
	if (!compiled) {
		if (err)
			*err = p->compile_error ? p->compile_error : xstrdup("jq: compile error");
		else
			free(p->compile_error);
		p->compile_error = NULL;
		jqprog_free(p);
		return NULL;
	}
	return p;
}

jv jqprog_run(struct jqprog *p, jv input)
{
	bool cut;
	return jqprog_run_capped(p, input, 0, &cut);
}

jv jqprog_run_capped(struct jqprog *p, jv input, int max, bool *cut)
{
	/* jq_start resets whatever the previous run left on the stack, so one
	 * jq_state serves every run. */
	jq_start(p->jq, input, 0);
	jv outputs = jv_array();
	jv r;
	int n = 0;
	*cut = false;
	while (jv_is_valid(r = jq_next(p->jq))) {
		if (max && n == max) {
			/* One more than wanted: the rest of the run is dropped by the
			 * next jq_start, as after an error. */
			jv_free(r);
			*cut = true;
			return outputs;
		}
		outputs = jv_array_append(outputs, r);
		n++;
	}

	/* Stop at the first error, as the jq command does: the rest of the run
	 * is dropped by the next jq_start (draining could loop forever on a
	 * generator of errors). An `error(null)` looks like a normal end in
	 * libjq 1.6 and is taken as one. */
	if (jv_invalid_has_msg(jv_copy(r))) {
		jv_free(outputs);
		char *text = message_text(jv_invalid_get_msg(r));
		jv err = jv_invalid_with_msg(jv_string(text));
		free(text);
		return err;
	}
	jv_free(r);

	/* `halt` ends the run quietly (no exit code, no message): keep the
	 * outputs. `halt_error` (a message, exit code 5 by default) is an
	 * error, like any other way of failing the run. */
	if (jq_halted(p->jq)) {
		jv code = jq_get_exit_code(p->jq);
		jv msg = jq_get_error_message(p->jq);
		jv err = jv_null();
		int status = 0;
		if (jv_get_kind(code) == JV_KIND_NUMBER) {
			/* Converting an out-of-range double to int is undefined. */
			double d = jv_number_value(code);
			status = d >= -255 && d <= 255 ? (int)d : 1;
		}
		char *text = jv_is_valid(msg) ? message_text(jv_copy(msg)) : NULL;
		size_t len = text ? strlen(text) : 0;
		if (len && text[len - 1] == '\n') /* halt_error texts usually end in one */
			text[--len] = '\0';
		if (len) {
			err = jv_invalid_with_msg(jv_string(text));
		} else if (text || status != 0) {
			err = jv_invalid_with_msg(jv_string_fmt("halt_error with exit code %d", status));
		}
		free(text);
		jv_free(code);
		jv_free(msg);
		forget_halt(p->jq);
		if (!jv_is_valid(err)) {
			jv_free(outputs);
			return err;
		}
		jv_free(err);
	}
	return outputs;
}

void jqprog_free(struct jqprog *p)
{
	if (!p)
		return;
	jq_teardown(&p->jq);
	free(p->compile_error);
	free(p);
}
