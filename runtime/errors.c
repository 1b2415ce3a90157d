#include "errors.h"
#include "quarantine.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

const char *eddy_strerror(int code) {
  switch (code) {
#define EDDY_ERRNO_CASE(name, c, text) case c: return text;
    EDDY_ERRNO_MAP(EDDY_ERRNO_CASE)
#undef EDDY_ERRNO_CASE
  }
  return "unknown error";
}

const char *eddy_err_name(int code) {
  switch (code) {
#define EDDY_ERRNO_CASE(name, c, text) case c: return "EDDY_" #name;
    EDDY_ERRNO_MAP(EDDY_ERRNO_CASE)
#undef EDDY_ERRNO_CASE
  }
  return "EUNKNOWN";
}

void eddy_logf(const char *level, const char *fmt, ...) {
  char line[4096];
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  char t[32];
  eddy_format_time((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000, t);
  int n = snprintf(line, sizeof line, "%s %-5s ", t, level);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
  va_end(ap);
  size_t len = strlen(line);
  line[len++] = '\n';
  /* One write per line: lines of several threads never interleave. */
  ssize_t w = write(STDERR_FILENO, line, len);
  (void)w;
}
