/*
 * runner.c - one binary that runs every C test listed in test-list.h.
 *
 *   runner               run every test
 *   runner NAME...       run only these (in list order)
 *   runner --list        print the test names, one a line
 *
 * Prints "ok NAME" or "FAIL NAME" per test, failure details on stderr, then
 * "N passed, N failed"; exits 0 only when none failed, 2 on a bad argument.
 *
 * Tests run one after another in this process: a test that crashes takes the
 * run down with it (the last "ok" line printed shows where).  That is the
 * price of keeping the runner this small; run under ASan to get the why.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "test.h"
#include "test-list.h"

#define TEST_DECLARE(name) void test_##name(void);
TEST_LIST(TEST_DECLARE)
#undef TEST_DECLARE

static const struct test {
  const char *name;
  void (*fn)(void);
} tests[] = {
#define TEST_ENTRY(name) {#name, test_##name},
  TEST_LIST(TEST_ENTRY)
#undef TEST_ENTRY
};

#define NTESTS (sizeof tests / sizeof tests[0])

/* Set by test_fail(), cleared before each test. */
static int current_failed;

/* Marks the running test failed and prints "file:line: " and the formatted
 * message to stderr (the contract is in test.h). */
void test_fail(const char *file, int line, const char *fmt, ...) {
  va_list ap;
  current_failed = 1;
  fflush(stdout);  /* keep the message after the lines already printed */
  fprintf(stderr, "%s:%d: ", file, line);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
}

static int is_test(const char *name) {
  for (size_t i = 0; i < NTESTS; i++)
    if (strcmp(tests[i].name, name) == 0)
      return 1;
  return 0;
}

static int is_selected(const char *name, int argc, char **argv) {
  if (argc < 2)
    return 1;
  for (int i = 1; i < argc; i++)
    if (strcmp(argv[i], name) == 0)
      return 1;
  return 0;
}

/* Runs the selected tests (see the top of this file); the exit status is 0
 * when every test that ran passed, 1 when one failed, 2 for an unknown test
 * name (nothing is run then). */
int main(int argc, char **argv) {
  int passed = 0, failed = 0;

  if (argc == 2 && strcmp(argv[1], "--list") == 0) {
    for (size_t i = 0; i < NTESTS; i++)
      printf("%s\n", tests[i].name);
    return 0;
  }
  for (int i = 1; i < argc; i++) {
    if (!is_test(argv[i])) {
      fprintf(stderr, "unknown test '%s' (see %s --list)\n", argv[i], argv[0]);
      return 2;
    }
  }

  for (size_t i = 0; i < NTESTS; i++) {
    if (!is_selected(tests[i].name, argc, argv))
      continue;
    current_failed = 0;
    tests[i].fn();
    if (current_failed) {
      failed++;
      printf("FAIL %s\n", tests[i].name);
    } else {
      passed++;
      printf("ok %s\n", tests[i].name);
    }
    fflush(stdout);
  }
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
