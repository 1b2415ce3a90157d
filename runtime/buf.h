/*
 * buf.h - a growable byte buffer, and JSON text written into it.
 */
#ifndef EDDY_BUF_H
#define EDDY_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct eddy_buf {
  char *data;
  size_t len;
  size_t cap;
  int oom;          /* set once an allocation failed; appends then no-op */
} eddy_buf;

#define EDDY_BUF_INIT { NULL, 0, 0, 0 }

/* Appends n bytes.  On allocation failure sets b->oom and returns -1. */
int eddy_buf_add(eddy_buf *b, const void *p, size_t n);
int eddy_buf_puts(eddy_buf *b, const char *s);
int eddy_buf_printf(eddy_buf *b, const char *fmt, ...)
  __attribute__((format(printf, 2, 3)));
/* Appends the decimal text of v (no printf: this is on hot paths). */
int eddy_buf_int(eddy_buf *b, int64_t v);
/* Appends n lower-case hex digits of v (its low 4n bits), n <= 16. */
int eddy_buf_hex(eddy_buf *b, uint64_t v, int n);
/* Empties the buffer, keeping its memory. */
void eddy_buf_reset(eddy_buf *b);
/* Frees the memory; the buffer is empty and reusable after. */
void eddy_buf_free(eddy_buf *b);

/* 1 when the n bytes at p are valid UTF-8 (no overlongs, no surrogates). */
int eddy_utf8_valid(const void *p, size_t n);

/* Appends p as a JSON string literal, quotes included.  The bytes must be
 * valid UTF-8 (check with eddy_utf8_valid); control characters, quotes and
 * backslashes are escaped. */
int eddy_buf_json_str(eddy_buf *b, const void *p, size_t n);

/* Appends the standard base64 encoding (with padding) of n bytes. */
int eddy_buf_base64(eddy_buf *b, const void *p, size_t n);

#endif
