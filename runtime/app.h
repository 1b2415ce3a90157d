/*
 * app.h - an app file read into C: its settings, topics and consumers.
 *
 * `eddy run` reads the app at startup and again at every reload.  Reading
 * runs lua/eddy/app.lua (eddy.app.load) in a Lua state of its own, made and
 * closed by the call, so a reload validates new scripts without touching
 * the states that run the handlers.
 */
#ifndef EDDY_APP_H
#define EDDY_APP_H

#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "log.h"

typedef struct eddy_app {
  char *data_dir;           /* the --data override, else the app's */
  char *app_dir;            /* the app file's directory */
  int workers;
  int64_t dedupe_window_ms;
  int nhandler_files;
  char **handler_files;     /* as eddy.app resolved them, in load order */
  int *handler_strict;      /* per handler file: 1 when it runs in the strict sandbox */
  char *catalog;            /* the declared events, as eddy.catalog.dump wrote them */
  int nevents;              /* how many (type, version) are declared */
  int nhandler_dirs;
  char **handler_dirs;      /* the directories among the app's handlers */
  int ntopics;
  char **topic_names;       /* the topics the app declares */
  eddy_topic_config *topics;
  int nconsumers;
  eddy_consumer_def *consumers; /* in load order; store_id and slot_seq unset */
  char *broker;             /* kafka://..., or NULL: the embedded log */
  char *admin;              /* the admin endpoint's HOST:PORT, or NULL */
  int admin_public;         /* admin may listen on an address not loopback */
  int nkafka;
  char **kafka;             /* librdkafka properties: name, value, ..., NULL */
} eddy_app;

/* Reads app file `file` (data_override: the --data directory, or NULL).
 * Returns 0 and fills *a (freed with eddy_app_free), or -1 with the
 * one-line error of eddy.app in err ("handlers/x.lua:3: ..."). */
int eddy_app_read(const char *file, const char *data_override, eddy_app *a,
                  char *err, size_t errlen);
void eddy_app_free(eddy_app *a);

/* Copies the strings of def into a new definition owned by the caller
 * (freed with eddy_consumer_def_free); store_id, slot_seq and the rest
 * are copied as they are.  Returns 0, or -1 when out of memory. */
int eddy_consumer_def_copy(eddy_consumer_def *dst, const eddy_consumer_def *src);
void eddy_consumer_def_free(eddy_consumer_def *c);

/* 1 when a and b define the same consumer the same way (the same handler
 * text, topics and options). */
int eddy_consumer_def_same(const eddy_consumer_def *a, const eddy_consumer_def *b);

#endif
