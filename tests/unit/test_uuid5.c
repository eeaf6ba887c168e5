/* test_uuid5.c: SHA-1 against the FIPS 180 examples, version 5 UUIDs against known ones. */
#include <config.h>

#include <stdlib.h>
#include <string.h>

#include "tap.h"
#include "uuid5.h"

static void hex(const uint8_t *d, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", d[i]);
}

static void sha1_is(const void *data, size_t n, const char *want, const char *name)
{
	uint8_t d[SHA1_LEN];
	char got[2 * SHA1_LEN + 1];
	sha1(data, n, d);
	hex(d, sizeof d, got);
	is_str(got, want, name);
}

int main(void)
{
	sha1_is("", 0, "da39a3ee5e6b4b0d3255bfef95601890afd80709", "sha1 of the empty string");
	sha1_is("abc", 3, "a9993e364706816aba3e25717850c26c9cd0d89d", "sha1 of abc");
	const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
	sha1_is(two, strlen(two), "84983e441c3bd26ebaae4aa1f95129e5e54670f1", "sha1 of the two-block example");
	/* 55, 56 and 64 bytes: the padding lands at the edges of a block. */
	static char a[1000001];
	memset(a, 'a', sizeof a - 1);
	sha1_is(a, 55, "c1c8bbdc22796e28c0e15163d20899b65621d65a", "sha1 of 55 a");
	sha1_is(a, 56, "c2db330f6083854c99d4b5bfb6e8f29f201be699", "sha1 of 56 a");
	sha1_is(a, 64, "0098ba824b5c16427bd7a1122a5a442a25ec644d", "sha1 of 64 a");
	sha1_is(a, 1000000, "34aa973cd4c4daa4f61eeb2bdbad27316534016f", "sha1 of a million a");

	char u[UUID_LEN + 1];
	/* The DNS namespace of RFC 4122 appendix C, and the URL one. */
	ok(uuid5("6ba7b810-9dad-11d1-80b4-00c04fd430c8", "python.org", 10, u) == 0, "uuid5 in the DNS namespace");
	is_str(u, "886313e1-3b8a-5372-9b90-0c9aee199e5d", "uuid5(DNS, python.org)");
	uuid5("6ba7b811-9dad-11d1-80b4-00c04fd430c8", "http://example.com/", 19, u);
	is_str(u, "0a300ee9-f9e4-5697-a51a-efc7fafaba67", "uuid5(URL, http://example.com/)");
	/* A workspace id as the namespace, a conversation key as the name. */
	const char *ws = "123e4567-e89b-42d3-a456-426614174000";
	const char *key = "peer:0b6f9bd2-3c1e-4a55-9a8e-6f0f2a1c9d10";
	uuid5(ws, key, strlen(key), u);
	is_str(u, "3972a1d5-ebf2-54fc-8cc9-25b6d6ccd1a6", "uuid5(workspace, peer key)");
	uuid5(ws, "", 0, u);
	is_str(u, "21d0aaf2-5b60-5d92-a2e4-73ad13390389", "uuid5 of an empty name");
	ok(uuid_valid(u) && u[14] == '5', "a version 5 UUID in canonical lower case");
	/* Upper-case namespaces are the same UUID. */
	char up[UUID_LEN + 1];
	uuid5("123E4567-E89B-42D3-A456-426614174000", "", 0, up);
	is_str(up, u, "the namespace's case does not matter");

	ok(uuid5("not-a-uuid", "x", 1, u) == -1, "a namespace that is not a UUID is refused");
	ok(uuid5("123e4567-e89b-42d3-a456-42661417400", "x", 1, u) == -1, "a short namespace is refused");
	ok(uuid5("123e4567-e89b-42d3-a456-4266141740000", "x", 1, u) == -1, "a long namespace is refused");
	ok(uuid5("123e4567e89b-42d3-a456-4266141740000", "x", 1, u) == -1, "a misplaced dash is refused");
	return done_testing();
}
