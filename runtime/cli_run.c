/*
 * cli_run.c - eddy run [APP].
 */
#include "cli.h"
#include "errors.h"
#include "runner.h"

#include <stdint.h>
#include <stdlib.h>

static const eddy_cli_opt run_opts[] = {
  { "drain", 0, NULL, "exit 0 once every partition is consumed, no retry waits and the outbox is empty" },
  { "workers", 'w', "N", "handler threads (default: the app's 'workers', else 2)" },
  { "broker", 0, "URL", "consume from the Kafka cluster kafka://HOST:PORT[,...] (default: the app's 'broker', else the embedded log)" },
  { "admin", 0, "ADDR", "serve /metrics, /healthz and /readyz on HOST:PORT (default: the app's 'admin'; port 0: any free port)" },
  { "log-format", 0, "FORMAT", "log lines as json or text (default: $EDDY_LOG_FORMAT, else text on a terminal and json otherwise)" },
  { 0 }
};

static int run_run(const eddy_cli_args *a) {
  /* The format is chosen before anything logs; a bad one is refused
   * rather than ignored, so that a log pipeline never gets the other. */
  const char *lf = eddy_cli_value(a, "log-format");
  const char *env = getenv("EDDY_LOG_FORMAT");
  int format = EDDY_LOG_AUTO;
  if (lf) {
    format = eddy_log_format_parse(lf);
    if (format < 0) return eddy_cli_usage_error(a, "--log-format must be json or text, got '%s'", lf);
  } else if (env && *env) {
    format = eddy_log_format_parse(env);
    if (format < 0)
      return eddy_cli_usage_error(a, "EDDY_LOG_FORMAT must be json or text, got '%s'", env);
  }
  eddy_log_set_format(format);
  eddy_run_options o = { a->npos ? a->pos[0] : "./eddy.lua",
                         eddy_cli_value(a, "data"), eddy_cli_flag(a, "drain"), 0,
                         eddy_cli_value(a, "broker"), eddy_cli_value(a, "admin") };
  if (eddy_cli_value(a, "workers")) {
    int64_t n;
    if (eddy_cli_int(a, "workers", 1, 64, &n) != 0) return EDDY_EXIT_USAGE;
    o.workers = (int)n;
  }
  return eddy_run(&o);
}

const eddy_cli_cmd eddy_cmd_run = {
  "run", "[APP] [--drain]", "run an app's consumers (APP defaults to ./eddy.lua)",
  "Loads the app and its handler files, creates the app's topics, and\n"
  "handles messages until SIGINT or SIGTERM, which finish the work in\n"
  "flight, commit and exit 0 (a second signal exits at once; nothing\n"
  "committed is lost).  A bad app is reported in one line and exit 1,\n"
  "before anything is consumed.  --data overrides the app's data directory.\n"
  "\n"
  "Log lines go to stderr: one JSON object per line (time, level, message,\n"
  "consumer, message_id, correlation_id, trace_id, ...), or readable text\n"
  "when stderr is a terminal.  --log-format, else EDDY_LOG_FORMAT (json or\n"
  "text), chooses instead.\n",
  run_opts, 0, 1, run_run
};
