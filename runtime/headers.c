#include "headers.h"

#include <string.h>

static size_t varint_size(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) { v >>= 7; n++; }
  return n;
}

static size_t varint_put(unsigned char *p, uint64_t v) {
  size_t n = 0;
  while (v >= 0x80) { p[n++] = (unsigned char)(v | 0x80); v >>= 7; }
  p[n++] = (unsigned char)v;
  return n;
}

/* Reads a varint at *pos; returns 0 or -1 when it runs past len or past
 * 64 bits. */
static int varint_get(const unsigned char *p, size_t len, size_t *pos,
                      uint64_t *v) {
  uint64_t r = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (*pos >= len) return -1;
    unsigned char b = p[(*pos)++];
    r |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) { *v = r; return 0; }
  }
  return -1;
}

size_t eddy_headers_size(const eddy_header *h, size_t n) {
  size_t size = 0;
  for (size_t i = 0; i < n; i++)
    size += varint_size(h[i].name_len) + h[i].name_len +
            varint_size(h[i].value_len) + h[i].value_len;
  return size;
}

size_t eddy_headers_encode(const eddy_header *h, size_t n, unsigned char *out) {
  size_t at = 0;
  for (size_t i = 0; i < n; i++) {
    at += varint_put(out + at, h[i].name_len);
    if (h[i].name_len) memcpy(out + at, h[i].name, h[i].name_len);
    at += h[i].name_len;
    at += varint_put(out + at, h[i].value_len);
    if (h[i].value_len) memcpy(out + at, h[i].value, h[i].value_len);
    at += h[i].value_len;
  }
  return at;
}

int eddy_headers_next(const void *blob, size_t len, size_t *pos, eddy_header *h) {
  const unsigned char *p = blob;
  if (*pos >= len) return 0;
  uint64_t n;
  if (varint_get(p, len, pos, &n) || n > len - *pos) return -1;
  h->name = (const char *)p + *pos;
  h->name_len = (size_t)n;
  *pos += (size_t)n;
  if (varint_get(p, len, pos, &n) || n > len - *pos) return -1;
  h->value = (const char *)p + *pos;
  h->value_len = (size_t)n;
  *pos += (size_t)n;
  return 1;
}

const char *eddy_headers_get(const void *blob, size_t len, const char *name,
                             size_t *value_len) {
  size_t pos = 0, nl = strlen(name);
  eddy_header h;
  const char *found = NULL;
  while (eddy_headers_next(blob, len, &pos, &h) == 1) {
    if (h.name_len == nl && memcmp(h.name, name, nl) == 0) {
      found = h.value;
      *value_len = h.value_len;
    }
  }
  return found;
}

const char *eddy_headers_trace_id(const void *blob, size_t len, char out[33]) {
  size_t n = 0;
  const char *tp = eddy_headers_get(blob, len, "traceparent", &n);
  if (!tp || n != 55 || tp[2] != '-' || tp[35] != '-') return NULL;
  int nonzero = 0;
  for (int i = 0; i < 32; i++) {
    char c = tp[3 + i];
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
      return NULL;
    nonzero |= c != '0';
    out[i] = c;
  }
  out[32] = '\0';
  return nonzero ? out : NULL;
}
