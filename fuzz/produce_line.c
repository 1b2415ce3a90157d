/*
 * produce_line.c - fuzzes the splitting of `eddy produce`'s input lines
 * into key and value (runtime/produce_line.h).
 *
 * The input: one byte giving the separator's length (0: none, else 1-4),
 * the separator, then standard input, cut into lines as getline(3) does.
 * Checks: each line gives back exactly its bytes: value alone without a
 * separator; key, separator, value with one, the key holding no earlier
 * separator; a line without one is refused and only such a line.
 */
#include <string.h>

#include "fuzz.h"
#include "produce_line.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  size_t seplen = data[0] % 5;
  if (size < 1 + seplen) return 0;
  const char *sep = seplen ? (const char *)data + 1 : NULL;
  const uint8_t *in = data + 1 + seplen, *end = data + size;
  while (in < end) {
    const uint8_t *nl = memchr(in, '\n', (size_t)(end - in));
    size_t len = nl ? (size_t)(nl - in) + 1 : (size_t)(end - in);
    /* As getline gives it: a buffer of its own, NUL-terminated. */
    char *line = malloc(len + 1);
    FUZZ_CHECK(line != NULL, "out of memory");
    memcpy(line, in, len);
    line[len] = 0;
    size_t text = nl ? len - 1 : len;
    eddy_produce_line pl;
    int rc = eddy_produce_line_split(line, len, sep, seplen, &pl);
    FUZZ_CHECK(line[text] == 0, "the newline was not cut");
    if (!sep) {
      FUZZ_CHECK(rc == 0 && !pl.key && pl.value == line && pl.value_len == text,
                 "no separator: the value is not the line");
    } else {
      const char *at = memmem(in, text, sep, seplen);
      FUZZ_CHECK((rc == 0) == (at != NULL), "split %d, separator %s", rc, at ? "found" : "absent");
      if (rc == 0) {
        FUZZ_CHECK(pl.key == line && pl.key_len == (size_t)(at - (const char *)in) &&
                   pl.value == line + pl.key_len + seplen &&
                   pl.key_len + seplen + pl.value_len == text &&
                   memcmp(pl.value, in + pl.key_len + seplen, pl.value_len) == 0,
                   "key and value are not the line's bytes");
      }
    }
    free(line);
    in += len;
  }
  return 0;
}
