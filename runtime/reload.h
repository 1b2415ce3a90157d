/*
 * reload.h - hot reload of an app's handler scripts while `eddy run` runs.
 *
 * A reload reads the app file and every handler file again (app.h), in a
 * Lua state of its own, then builds each worker's next Lua state; only when
 * all of that succeeded does anything switch.  Each worker switches between
 * two batches, so messages in flight finish on the old version and the next
 * message of every key runs on the new one.  docs/reload.md has the design.
 *
 * What starts a reload: a change to a watched file (the app file, the
 * handler files, new or deleted *.lua files in handler directories; libuv
 * file-system events, debounced), SIGHUP, and `eddy reload` through the
 * control socket (control.h).  One reload runs at a time; requests that
 * come meanwhile are served by the next one.
 */
#ifndef EDDY_RELOAD_H
#define EDDY_RELOAD_H

#include <stddef.h>

#include "engine.h"

struct eddy_app;
struct eddy_buf;
typedef struct eddy_reloader eddy_reloader;

/* Makes the reloader of runner r, which runs the app a (its watched
 * directories).  Returns 0, or -1 with err. */
int eddy_reloader_new(eddy_runner *r, const struct eddy_app *a, eddy_reloader **out,
                      char *err, size_t errlen);
/* Starts watching, SIGHUP and the control socket on the runner's loop.
 * Returns 0, or -1 after logging why (the run then stops). */
int eddy_reloader_start(eddy_reloader *rl);
/* Called on every runner tick: finishes a switch once every worker runs
 * the new generation. */
void eddy_reloader_tick(eddy_reloader *rl);
/* Closes the reloader's handles (the loop runs once more to close them). */
void eddy_reloader_stop(eddy_reloader *rl);
/* Frees the reloader; NULL is a no-op. */
void eddy_reloader_free(eddy_reloader *rl);

/* Called once a reload is over: ok, and a one-line text (what switched, or
 * the error). */
typedef void (*eddy_reload_done)(void *ud, int ok, const char *text);
/* Asks for a reload; source names what asked ("file change", "SIGHUP",
 * "eddy reload").  done (may be NULL) is called when it is over. */
void eddy_reloader_request(eddy_reloader *rl, const char *source, eddy_reload_done done,
                           void *ud);
/* Appends the run's status to b as one JSON object (see docs/reload.md). */
void eddy_reloader_status(eddy_reloader *rl, struct eddy_buf *b);
/* Reloads so far, that went through and that failed (rl may be NULL). */
void eddy_reloader_counts(const eddy_reloader *rl, int *ok, int *failed);

#endif
