/*
 * guard.h - what keeps one message from taking `eddy run` down forever.
 *
 * Most handler failures are caught in the call (sandbox.h).  What is not
 * (a segfault in a C module, a call stuck in C past its timeout, where no
 * hook can stop it) ends the process; a supervisor starts it again, and
 * the message would be read again and end it again.  The guard:
 *
 * - at startup, reads what dead runs were handling (inflight.h), logs it,
 *   and counts in the store (crashes.h) each message that ended its run
 *   itself: a fatal signal in its call, or its call stuck.  A run killed
 *   from outside (SIGKILL, the OOM killer) is not counted against the
 *   message it was handling: an operator's kills must not quarantine
 *   good messages;
 * - gives each worker its in-flight slot, and says which messages took
 *   EDDY_CRASH_RUNS runs down: the worker quarantines those with reason
 *   "crashed" instead of handling them;
 * - runs a watchdog thread: a handler call still running GRACE_MS after
 *   its timeout cannot be stopped in the process (the count hook does not
 *   fire inside C), so the watchdog logs it, marks it stuck and exits the
 *   process with status 1, as a crash would, and the next start counts it.
 *   Exiting is safe: nothing committed is lost, and what was not
 *   committed is read again.
 */
#ifndef EDDY_GUARD_H
#define EDDY_GUARD_H

#include <stddef.h>
#include <stdint.h>

#include "crashes.h"
#include "inflight.h"
#include "store.h"

typedef struct eddy_guard eddy_guard;

/* How long after its timeout a call that did not return ends the process. */
#define EDDY_GUARD_GRACE_MS 5000

/* Starts the guard of a run on store s (the runner's connection, before
 * any worker starts) for nworkers workers.  Returns 0 and *out, or -1
 * with err. */
int eddy_guard_start(eddy_store *s, int nworkers, eddy_guard **out, char *err, size_t errlen);

/* Stops the watchdog and removes the in-flight file.  NULL is a no-op. */
void eddy_guard_stop(eddy_guard *g);

/* Worker i's in-flight slot (NULL when g is NULL). */
eddy_inflight_slot *eddy_guard_slot(eddy_guard *g, int i);

/* The crash record of a message, or NULL: none.  Thread-safe (the set is
 * read-only once the guard started). */
const eddy_crash_row *eddy_guard_crashed(const eddy_guard *g, int64_t consumer_id,
                                         const char *topic, int partition, int64_t offset);

/* 1 when any message has a crash record. */
int eddy_guard_any(const eddy_guard *g);

/* Writes why message c is quarantined ("the handler took eddy down 2
 * times on this message (last: SIGSEGV)") into out. */
void eddy_guard_reason(const eddy_crash_row *c, char *out, size_t n);

/* Worker i starts a call that may run timeout_ms (0: no limit), on the
 * message its slot names; and ends it. */
void eddy_guard_call_begin(eddy_guard *g, int i, int64_t timeout_ms);
void eddy_guard_call_end(eddy_guard *g, int i);

#endif
