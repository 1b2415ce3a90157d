/*
 * test.h - the C test runner's macros, for core pieces with no Lua face.
 *
 * A test file test/test-<concept>.c includes this header and defines
 *
 *   TEST(store_open_creates_file) {
 *     ASSERT_EQ_INT(eddy_store_open(...), 0);
 *   }
 *
 * and the test is listed once, as X(store_open_creates_file), in
 * test/test-list.h.  Test names are C identifiers, unique across all files;
 * prefix them with the concept.  test/runner.c runs them.
 *
 * A failed ASSERT* prints "file:line: message" to stderr, marks the running
 * test failed and returns from the function it is written in.  So use them in
 * the TEST body itself: in a helper they would return from the helper only
 * (have the helper return a value and ASSERT on that instead).  Anything the
 * test allocated before the failing ASSERT leaks; ASan reports it only for a
 * failing run, which has already failed.
 */
#ifndef EDDY_TEST_H
#define EDDY_TEST_H

#include <stdint.h>
#include <string.h>

/* Marks the running test failed and prints "file:line: " and the printf-style
 * message to stderr.  Called by the ASSERT* macros; a test may call it
 * directly for a failure they cannot express, then return. */
void test_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Defines the test function test_<name> (with a prototype, so
 * -Wmissing-prototypes stays quiet). */
#define TEST(name)                                                          \
  void test_##name(void);                                                   \
  void test_##name(void)

#define ASSERT(cond)                                                        \
  do {                                                                      \
    if (!(cond)) {                                                          \
      test_fail(__FILE__, __LINE__, "assertion failed: %s", #cond);         \
      return;                                                               \
    }                                                                       \
  } while (0)

/* a and b are evaluated once each, as intmax_t: fine for every signed type
 * and for unsigned values up to INTMAX_MAX. */
#define ASSERT_EQ_INT(a, b)                                                 \
  do {                                                                      \
    intmax_t test_a_ = (intmax_t)(a), test_b_ = (intmax_t)(b);              \
    if (test_a_ != test_b_) {                                               \
      test_fail(__FILE__, __LINE__, "%s == %s: got %jd, expected %jd", #a,  \
                #b, test_a_, test_b_);                                      \
      return;                                                               \
    }                                                                       \
  } while (0)

/* a and b are NUL-terminated strings or NULL; two NULLs are equal. */
#define ASSERT_EQ_STR(a, b)                                                 \
  do {                                                                      \
    const char *test_a_ = (a), *test_b_ = (b);                              \
    if (test_a_ == NULL || test_b_ == NULL ? test_a_ != test_b_             \
                                           : strcmp(test_a_, test_b_) != 0) { \
      test_fail(__FILE__, __LINE__, "%s == %s: got %s%s%s, expected %s%s%s", \
                #a, #b, test_a_ ? "\"" : "", test_a_ ? test_a_ : "NULL",    \
                test_a_ ? "\"" : "", test_b_ ? "\"" : "",                   \
                test_b_ ? test_b_ : "NULL", test_b_ ? "\"" : "");           \
      return;                                                               \
    }                                                                       \
  } while (0)

#endif
