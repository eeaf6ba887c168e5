/* uuid5.c: name-based UUIDs (RFC 4122 version 5): SHA-1 (FIPS 180-4) of a namespace and a name. */
#include <config.h>

#include <stdio.h>
#include <string.h>

#include "uuid5.h"

struct sha1_ctx {
	uint32_t h[5];
	uint64_t len;            /* bytes hashed so far */
	uint8_t block[64];
	size_t fill;
};

static uint32_t rol(uint32_t x, int n)
{
	return (x << n) | (x >> (32 - n));
}

static void sha1_block(struct sha1_ctx *st, const uint8_t *p)
{
	uint32_t w[80];
	for (int i = 0; i < 16; i++)
		w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
	for (int i = 16; i < 80; i++)
		w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
	uint32_t a = st->h[0], b = st->h[1], c = st->h[2], d = st->h[3], e = st->h[4];
	for (int i = 0; i < 80; i++) {
		uint32_t f, k;
		if (i < 20) {
			f = (b & c) | (~b & d);
			k = 0x5a827999;
		} else if (i < 40) {
			f = b ^ c ^ d;
			k = 0x6ed9eba1;
		} else if (i < 60) {
			f = (b & c) | (b & d) | (c & d);
			k = 0x8f1bbcdc;
		} else {
			f = b ^ c ^ d;
			k = 0xca62c1d6;
		}
		uint32_t t = rol(a, 5) + f + e + k + w[i];
		e = d;
		d = c;
		c = rol(b, 30);
		b = a;
		a = t;
	}
	st->h[0] += a;
	st->h[1] += b;
	st->h[2] += c;
	st->h[3] += d;
	st->h[4] += e;
}

static void sha1_init(struct sha1_ctx *c)
{
	static const uint32_t h0[5] = { 0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0 };
	memset(c, 0, sizeof *c);
	memcpy(c->h, h0, sizeof h0);
}

static void sha1_update(struct sha1_ctx *c, const void *data, size_t n)
{
	const uint8_t *p = data;
	c->len += n;
	while (n > 0) {
		size_t take = 64 - c->fill < n ? 64 - c->fill : n;
		memcpy(c->block + c->fill, p, take);
		c->fill += take;
		p += take;
		n -= take;
		if (c->fill == 64) {
			sha1_block(c, c->block);
			c->fill = 0;
		}
	}
}

static void sha1_final(struct sha1_ctx *c, uint8_t out[SHA1_LEN])
{
	uint64_t bits = c->len * 8;
	uint8_t pad = 0x80;
	sha1_update(c, &pad, 1);
	pad = 0;
	while (c->fill != 56)
		sha1_update(c, &pad, 1);
	uint8_t len[8];
	for (int i = 0; i < 8; i++)
		len[i] = (uint8_t)(bits >> (56 - 8 * i));
	sha1_update(c, len, 8);
	for (int i = 0; i < 5; i++) {
		out[4 * i] = (uint8_t)(c->h[i] >> 24);
		out[4 * i + 1] = (uint8_t)(c->h[i] >> 16);
		out[4 * i + 2] = (uint8_t)(c->h[i] >> 8);
		out[4 * i + 3] = (uint8_t)c->h[i];
	}
}

void sha1(const void *data, size_t n, uint8_t out[SHA1_LEN])
{
	struct sha1_ctx c;
	sha1_init(&c);
	sha1_update(&c, data, n);
	sha1_final(&c, out);
}

static int hex_value(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

int uuid5(const char *ns, const char *name, size_t n, char out[UUID_LEN + 1])
{
	uint8_t bytes[16];
	size_t k = 0;
	/* The namespace's 16 bytes, in network order, as RFC 4122 hashes them. */
	for (size_t i = 0; ns[i] && k < 16; i++) {
		if (ns[i] == '-' && (i == 8 || i == 13 || i == 18 || i == 23))
			continue;
		int hi = hex_value(ns[i]), lo = ns[i + 1] ? hex_value(ns[i + 1]) : -1;
		if (hi < 0 || lo < 0)
			return -1;
		bytes[k++] = (uint8_t)(hi << 4 | lo);
		i++;
	}
	if (k != 16 || strlen(ns) != UUID_LEN)
		return -1;
	struct sha1_ctx c;
	uint8_t d[SHA1_LEN];
	sha1_init(&c);
	sha1_update(&c, bytes, sizeof bytes);
	sha1_update(&c, name, n);
	sha1_final(&c, d);
	d[6] = (uint8_t)((d[6] & 0x0f) | 0x50); /* version 5 */
	d[8] = (uint8_t)((d[8] & 0x3f) | 0x80); /* the RFC 4122 variant */
	snprintf(out, UUID_LEN + 1,
		 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8], d[9], d[10], d[11], d[12], d[13], d[14], d[15]);
	return 0;
}
