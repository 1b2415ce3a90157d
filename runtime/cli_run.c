/*
 * cli_run.c - eddy run [APP].
 */
#include "cli.h"
#include "runner.h"

#include <stdint.h>

static const eddy_cli_opt run_opts[] = {
  { "drain", 0, NULL, "exit 0 once every partition is consumed, no retry waits and the outbox is empty" },
  { "workers", 'w', "N", "handler threads (default: the app's 'workers', else 2)" },
  { "broker", 0, "URL", "consume from the Kafka cluster kafka://HOST:PORT[,...] (default: the app's 'broker', else the embedded log)" },
  { "admin", 0, "ADDR", "serve /metrics, /healthz and /readyz on HOST:PORT (default: the app's 'admin'; port 0: any free port)" },
  { 0 }
};

static int run_run(const eddy_cli_args *a) {
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
  "before anything is consumed.  --data overrides the app's data directory.\n",
  run_opts, 0, 1, run_run
};
