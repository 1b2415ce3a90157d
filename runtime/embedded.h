/*
 * embedded.h - the Lua library (the files under lua/eddy) compiled into the binary
 * by tools/embed.lua, so that `eddy` needs no Lua files beside it.
 */
#ifndef EDDY_EMBEDDED_H
#define EDDY_EMBEDDED_H

#include <stddef.h>

typedef struct eddy_embedded_module {
  const char *name;     /* "eddy", "eddy.app" */
  const char *chunk;    /* chunk name for messages: "@lua/eddy/app.lua" */
  const char *source;
  size_t len;
} eddy_embedded_module;

/* Terminated by an entry with a NULL name. */
extern const eddy_embedded_module eddy_embedded_modules[];

#endif
