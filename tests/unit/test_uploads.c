/* test_uploads.c: the file names canvas uploads are stored under. */
#include <config.h>

#include <stdlib.h>
#include <string.h>

#include "tap.h"
#include "uploads.h"

#define FID "0f0f0f0f-1111-4222-8333-444444444444"

static void name_is(const char *name, const char *want, const char *what)
{
	char *got = uploads_file_name(FID, name);
	is_str(got, want, what);
	free(got);
}

int main(void)
{
	name_is("report.pdf", FID "-report.pdf", "the file id in front of the name");
	name_is(NULL, FID "-upload", "no name: upload");
	name_is("", FID "-upload", "an empty name: upload");
	name_is("../../etc/passwd", FID "-_._.._etc_passwd", "no slash, no leading dot");
	name_is(".bashrc", FID "-_bashrc", "a leading dot is replaced");
	name_is("a\nb\tc\x7f" "d\x01", FID "-a_b_c_d_", "control characters are replaced");
	name_is("caf\xc3\xa9 notes.txt", FID "-caf\xc3\xa9 notes.txt", "UTF-8 is kept");

	char longname[400];
	memset(longname, 'x', sizeof longname - 1);
	longname[sizeof longname - 1] = '\0';
	char *got = uploads_file_name(FID, longname);
	is_int(strlen(got), strlen(FID) + 1 + UPLOADS_NAME_MAX, "a long name is cut");
	free(got);
	/* A cut that would fall inside a character moves before it. */
	memset(longname, 'x', UPLOADS_NAME_MAX - 1);
	memcpy(longname + UPLOADS_NAME_MAX - 1, "\xc3\xa9tail", 7);
	got = uploads_file_name(FID, longname);
	is_int(strlen(got), strlen(FID) + 1 + UPLOADS_NAME_MAX - 1, "cut on a character boundary");
	free(got);
	return done_testing();
}
