/*
 * cli_reload.c - eddy reload | status: talk to running `eddy run`s through
 * their control sockets (control.h).
 */
#include "cli.h"
#include "control.h"

#include <stdio.h>
#include <string.h>

/* A reload waits for every worker to switch: a batch (50 ms at most) and
 * the time to load the scripts. */
#define RELOAD_TIMEOUT_MS 120000
#define STATUS_TIMEOUT_MS 10000

struct outcome { const eddy_cli_args *a; int failed; };

static void on_reload(void *ud, long pid, const char *answer) {
  struct outcome *o = ud;
  size_t n = strlen(answer);
  while (n && answer[n - 1] == '\n') n--;
  if (strncmp(answer, "ok ", 3) == 0) {
    printf("eddy run %ld: reloaded: %.*s\n", pid, (int)(n - 3), answer + 3);
  } else {
    const char *text = strncmp(answer, "error ", 6) == 0 ? answer + 6 : answer;
    size_t skip = (size_t)(text - answer);
    fprintf(stderr, "eddy reload: eddy run %ld: %.*s\n", pid, (int)(n - skip), text);
    o->failed = 1;
  }
}

static int run_reload(const eddy_cli_args *a) {
  const char *dir = eddy_cli_data_dir(a);
  struct outcome o = { a, 0 };
  char err[512];
  fflush(stdout);
  int n = eddy_control_call(dir, "reload", RELOAD_TIMEOUT_MS, on_reload, &o, err, sizeof err);
  if (n < 0) return eddy_cli_fail(a, "%s", err);
  if (n == 0) return eddy_cli_fail(a, "no eddy run is running on '%s'", dir);
  return o.failed ? EDDY_EXIT_FAIL : EDDY_EXIT_OK;
}

const eddy_cli_cmd eddy_cmd_reload = {
  "reload", "", "reload the handler scripts of the eddy run on --data DIR",
  "Asks every eddy run on the data directory to load its app and handler\n"
  "files again.  The new scripts are compiled and checked first: if any\n"
  "fails, nothing switches, the running version stays, and the error (file\n"
  "and line) is printed with exit 1.  Otherwise each worker switches\n"
  "between two messages, and reload prints what changed once every worker\n"
  "runs the new version.  A running eddy run also reloads on SIGHUP and when\n"
  "a handler file changes.\n",
  (const eddy_cli_opt[]){ { 0 } }, 0, 0, run_reload
};

static void on_status(void *ud, long pid, const char *answer) {
  (void)ud;
  (void)pid;
  fputs(answer, stdout);
}

static int run_status(const eddy_cli_args *a) {
  const char *dir = eddy_cli_data_dir(a);
  char err[512];
  const char *req = eddy_cli_flag(a, "json") ? "status" : "status text";
  int n = eddy_control_call(dir, req, STATUS_TIMEOUT_MS, on_status, NULL, err, sizeof err);
  if (n < 0) return eddy_cli_fail(a, "%s", err);
  if (n == 0) return eddy_cli_fail(a, "no eddy run is running on '%s'", dir);
  return EDDY_EXIT_OK;
}

const eddy_cli_cmd eddy_cmd_status = {
  "status", "[--json]", "show the eddy runs on --data DIR: consumers, versions, lag, quarantine, reloads",
  "For each eddy run on the data directory: its app, workers, each consumer\n"
  "with the version (hash of its handler file) it runs and when that was\n"
  "loaded, and how the last reload went.  --json prints one object per run:\n"
  "{\"pid\", \"app\", \"data\", \"started_at\", \"workers\", \"reloads\",\n"
  " \"consumers\": [{\"name\", \"version\", \"file\", \"loaded_at\"}],\n"
  " \"last_reload\": null or {\"at\", \"source\", \"ok\", \"error\"}}.\n",
  (const eddy_cli_opt[]){ { "json", 0, NULL, "one JSON object per line" }, { 0 } }, 0, 0,
  run_status
};
