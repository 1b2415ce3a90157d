/*
 * ljson.h - Lua values to JSON text, for ctx.state values and ctx:emit.
 *
 * lua-cjson 2.1 writes numbers with 14 significant digits, which loses
 * large integers (ids, microsecond times) and float precision; state must
 * read back what was written.  Integers are written exactly; floats with
 * the fewest digits that read back to the same double; object keys in
 * sorted order, so equal tables give equal text.  Decoding stays with
 * cjson.
 */
#ifndef EDDY_LJSON_H
#define EDDY_LJSON_H

#include <stddef.h>

#include <lua.h>

#include "buf.h"

/* Appends the JSON text of the value at idx to out.  Returns 0, or -1 with
 * a one-line reason in err ("cannot encode a function", "a string that is
 * not UTF-8", "a NaN or infinite number", "nested too deeply (or a
 * cycle)", "a table with both ... "). */
int eddy_json_encode(lua_State *L, int idx, eddy_buf *out, char *err, size_t errlen);

#endif
