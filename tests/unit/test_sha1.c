/* test_sha1.c: SHA-1 against the FIPS 180 vectors and padding edges, name-based UUIDs against RFC 4122 and Python's uuid5. */
#include <config.h>

#include <stdlib.h>
#include <string.h>

#include "tap.h"
#include "sha1.h"
#include "util.h"

static void hex_is(const char *data, size_t len, const char *want, const char *name)
{
	char got[SHA1_HEX_LEN + 1];
	sha1_hex(data, len, got);
	is_str(got, want, name);
}

static void test_vectors(void)
{
	hex_is("", 0, "da39a3ee5e6b4b0d3255bfef95601890afd80709", "empty input");
	hex_is("abc", 3, "a9993e364706816aba3e25717850c26c9cd0d89d", "\"abc\" (FIPS 180 example)");
	const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
	hex_is(two, strlen(two), "84983e441c3bd26ebaae4aa1f95129e5e54670f1", "the two-block FIPS 180 example");
	const char *fox = "The quick brown fox jumps over the lazy dog";
	hex_is(fox, strlen(fox), "2fd4e1c67a2d28fced849ee1bb76e7391b93eb12", "the quick brown fox");
}

static void test_padding_edges(void)
{
	/* 55 bytes leave room for the length in one block, 56 do not, 64 fill it. */
	char a[1000];
	memset(a, 'a', sizeof a);
	hex_is(a, 55, "c1c8bbdc22796e28c0e15163d20899b65621d65a", "55 bytes: padding in the same block");
	hex_is(a, 56, "c2db330f6083854c99d4b5bfb6e8f29f201be699", "56 bytes: padding spills into a second block");
	hex_is(a, 64, "0098ba824b5c16427bd7a1122a5a442a25ec644d", "64 bytes: exactly one block");
}

static void test_incremental(void)
{
	/* A million 'a' fed in uneven pieces: the same as one call would give. */
	char a[1000];
	memset(a, 'a', sizeof a);
	struct sha1 c;
	sha1_init(&c);
	size_t fed = 0, piece = 1;
	while (fed < 1000000) {
		size_t n = piece < 1000000 - fed ? piece : 1000000 - fed;
		if (n > sizeof a)
			n = sizeof a;
		sha1_update(&c, a, n);
		fed += n;
		piece = piece * 7 % 997 + 1;
	}
	unsigned char d[SHA1_LEN];
	sha1_final(&c, d);
	char hex[SHA1_HEX_LEN + 1];
	for (int i = 0; i < SHA1_LEN; i++)
		snprintf(hex + 2 * i, 3, "%02x", d[i]);
	is_str(hex, "34aa973cd4c4daa4f61eeb2bdbad27316534016f", "a million 'a' in uneven pieces (FIPS 180 example)");
}

static void test_uuid_name(void)
{
	char out[UUID_LEN + 1], again[UUID_LEN + 1];
	ok(uuid_name("6ba7b810-9dad-11d1-80b4-00c04fd430c8", "python.org", out), "uuid_name: a valid namespace");
	is_str(out, "886313e1-3b8a-5372-9b90-0c9aee199e5d", "uuid_name: the DNS namespace and python.org, as uuid5 gives");
	uuid_name("6ba7b811-9dad-11d1-80b4-00c04fd430c8", "https://example.com/", out);
	is_str(out, "dd2c1780-811a-5296-81c5-178a0ef488bc", "uuid_name: the URL namespace");
	ok(uuid_valid(out), "uuid_name: a canonical lower-case UUID");
	/* A workspace id as the namespace and a conversation key as the name: the
	 * session id a --per handler gets (the value Python's uuid.uuid5 gives). */
	char named[UUID_LEN + 1];
	uuid_name("123e4567-e89b-42d3-a456-426614174000", "peer:0b6f9bd2-3c1e-4a55-9a8e-6f0f2a1c9d10", named);
	is_str(named, "3972a1d5-ebf2-54fc-8cc9-25b6d6ccd1a6", "uuid_name: a workspace namespace and a peer key");
	uuid_name("123e4567-e89b-42d3-a456-426614174000", "", named);
	is_str(named, "21d0aaf2-5b60-5d92-a2e4-73ad13390389", "uuid_name: an empty name");
	ok(!uuid_name("not-a-uuid", "x", named), "uuid_name: a namespace that is not a UUID is refused");
	ok(out[14] == '5' && strchr("89ab", out[19]), "uuid_name: version 5, RFC 4122 variant");
	uuid_name("6ba7b811-9dad-11d1-80b4-00c04fd430c8", "https://example.com/", again);
	is_str(again, out, "uuid_name: the same inputs, the same id");
	uuid_name("6ba7b811-9dad-11d1-80b4-00c04fd430c8", "https://example.com", again);
	ok(strcmp(again, out) != 0, "uuid_name: another name, another id");
	ok(!uuid_name("6BA7B811-9DAD-11D1-80B4-00C04FD430C8", "x", out), "uuid_name: an upper-case namespace is refused");
	ok(!uuid_name("not a uuid", "x", out), "uuid_name: a namespace that is no UUID is refused");
}

int main(void)
{
	test_vectors();
	test_padding_edges();
	test_incremental();
	test_uuid_name();
	return done_testing();
}
