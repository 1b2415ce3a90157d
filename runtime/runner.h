/*
 * runner.h - `eddy run`: an app's consumers on the embedded log.
 * docs/runtime.md describes the threads, batches and offsets.
 */
#ifndef EDDY_RUNNER_H
#define EDDY_RUNNER_H

typedef struct eddy_run_options {
  const char *app;    /* the app file */
  const char *data;   /* overrides the app's data directory, or NULL */
  int drain;          /* exit 0 once everything is consumed */
  int workers;        /* overrides the app's worker count when > 0 */
  const char *broker; /* overrides the app's broker (kafka://...), or NULL */
  const char *admin;        /* the admin endpoint's address, or NULL: the app's */
} eddy_run_options;

/* Runs the app until SIGINT/SIGTERM (or, with drain, until every
 * partition is consumed, nothing waits for a retry and the outbox is
 * empty).  Prints a one-line error for a bad app.  Returns the exit
 * status: 0, or 1 on failure. */
int eddy_run(const eddy_run_options *o);

#endif
