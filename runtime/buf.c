#include "buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int grow(eddy_buf *b, size_t need) {
  if (b->oom) return -1;
  if (b->len + need <= b->cap) return 0;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->len + need) cap *= 2;
  char *d = realloc(b->data, cap);
  if (!d) { b->oom = 1; return -1; }
  b->data = d;
  b->cap = cap;
  return 0;
}

int eddy_buf_add(eddy_buf *b, const void *p, size_t n) {
  if (grow(b, n + 1)) return -1;
  if (n) memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = '\0';
  return 0;
}

int eddy_buf_puts(eddy_buf *b, const char *s) {
  return eddy_buf_add(b, s, strlen(s));
}

int eddy_buf_printf(eddy_buf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0 || grow(b, (size_t)n + 1)) return -1;
  va_start(ap, fmt);
  vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
  return 0;
}

int eddy_buf_int(eddy_buf *b, int64_t v) {
  char tmp[24];
  int i = 24;
  uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
  do { tmp[--i] = (char)('0' + u % 10); u /= 10; } while (u);
  if (v < 0) tmp[--i] = '-';
  return eddy_buf_add(b, tmp + i, (size_t)(24 - i));
}

int eddy_buf_hex(eddy_buf *b, uint64_t v, int n) {
  char tmp[16];
  for (int i = n - 1; i >= 0; i--) { tmp[i] = "0123456789abcdef"[v & 15]; v >>= 4; }
  return eddy_buf_add(b, tmp, (size_t)n);
}

void eddy_buf_reset(eddy_buf *b) {
  b->len = 0;
  if (b->data) b->data[0] = '\0';
}

void eddy_buf_free(eddy_buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
  b->oom = 0;
}

int eddy_utf8_valid(const void *p, size_t n) {
  const unsigned char *s = p;
  size_t i = 0;
  while (i < n) {
    unsigned c = s[i];
    if (c < 0x80) { i++; continue; }
    size_t len;
    unsigned min;
    if ((c & 0xe0) == 0xc0) { len = 2; c &= 0x1f; min = 0x80; }
    else if ((c & 0xf0) == 0xe0) { len = 3; c &= 0x0f; min = 0x800; }
    else if ((c & 0xf8) == 0xf0) { len = 4; c &= 0x07; min = 0x10000; }
    else return 0;
    if (n - i < len) return 0;
    for (size_t k = 1; k < len; k++) {
      if ((s[i + k] & 0xc0) != 0x80) return 0;
      c = (c << 6) | (s[i + k] & 0x3f);
    }
    if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) return 0;
    i += len;
  }
  return 1;
}

int eddy_buf_json_str(eddy_buf *b, const void *p, size_t n) {
  static const char hex[] = "0123456789abcdef";
  const unsigned char *s = p;
  if (grow(b, n + 3)) return -1;
  b->data[b->len++] = '"';
  size_t run = 0;  /* start of bytes not yet copied */
  for (size_t i = 0; i < n; i++) {
    unsigned char c = s[i];
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    if (eddy_buf_add(b, s + run, i - run)) return -1;
    char esc[7] = { '\\', 0 };
    size_t el = 2;
    switch (c) {
    case '"': esc[1] = '"'; break;
    case '\\': esc[1] = '\\'; break;
    case '\n': esc[1] = 'n'; break;
    case '\r': esc[1] = 'r'; break;
    case '\t': esc[1] = 't'; break;
    case '\b': esc[1] = 'b'; break;
    case '\f': esc[1] = 'f'; break;
    default:
      esc[1] = 'u'; esc[2] = '0'; esc[3] = '0';
      esc[4] = hex[c >> 4]; esc[5] = hex[c & 15];
      el = 6;
    }
    if (eddy_buf_add(b, esc, el)) return -1;
    run = i + 1;
  }
  if (eddy_buf_add(b, s + run, n - run)) return -1;
  return eddy_buf_add(b, "\"", 1);
}

int eddy_buf_base64(eddy_buf *b, const void *p, size_t n) {
  static const char tab[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const unsigned char *s = p;
  if (grow(b, (n + 2) / 3 * 4 + 1)) return -1;
  char *o = b->data + b->len;
  size_t i = 0;
  for (; i + 2 < n; i += 3) {
    uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
    *o++ = tab[v >> 18]; *o++ = tab[(v >> 12) & 63];
    *o++ = tab[(v >> 6) & 63]; *o++ = tab[v & 63];
  }
  if (i < n) {
    uint32_t v = (uint32_t)s[i] << 16 | (i + 1 < n ? (uint32_t)s[i + 1] << 8 : 0);
    *o++ = tab[v >> 18]; *o++ = tab[(v >> 12) & 63];
    *o++ = i + 1 < n ? tab[(v >> 6) & 63] : '=';
    *o++ = '=';
  }
  b->len = (size_t)(o - b->data);
  b->data[b->len] = '\0';
  return 0;
}
