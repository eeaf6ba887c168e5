/* main.c: start-up: standard descriptors, options, then the loop. */
#include <stdlib.h>
#include "options.h"
#include "loop.h"

int main(int argc, char **argv)
{
	struct settings s;
	int rc = options_parse(argc, argv, &s);
	if (rc >= 0)
		return rc;
	return loop_run(&s);
}
