/*
 * fuzz.h - what the libFuzzer harnesses in fuzz/ share (`make fuzz`).
 *
 * Each fuzz/<parser>.c defines LLVMFuzzerTestOneInput for one parser of
 * untrusted bytes and checks, beyond "no crash, no sanitizer report", the
 * parser's contract on every input: a broken one is a crash too.
 */
#ifndef EDDY_FUZZ_H
#define EDDY_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Fails the input (libFuzzer saves it as a crash) when cond is false. */
#define FUZZ_CHECK(cond, ...)                                                 \
  do {                                                                        \
    if (!(cond)) {                                                            \
      fprintf(stderr, "%s:%d: contract broken: %s: ", __FILE__, __LINE__, #cond); \
      fprintf(stderr, __VA_ARGS__);                                           \
      fputc('\n', stderr);                                                    \
      abort();                                                                \
    }                                                                         \
  } while (0)

#endif
