/*
 * ljson.h - Lua values to JSON text, for ctx.state values and ctx:emit.
 *
 * lua-cjson 2.1 writes numbers with 14 significant digits, which loses
 * large integers (ids, microsecond times) and float precision; state must
 * read back what was written.  Integers are written exactly; floats with
 * the fewest digits that read back to the same double; object keys in
 * sorted order, so equal tables give equal text.  The decoder keeps
 * integers integers and sizes each table once (lua-cjson grows them key by
 * key, rehashing as it goes).
 */
#ifndef EDDY_LJSON_H
#define EDDY_LJSON_H

#include <stddef.h>

#include <lua.h>

#include "buf.h"

/* Appends the JSON text of the value at idx to out.  Returns 0, or -1 with
 * a one-line reason in err ("cannot encode a function", "a string that is
 * not UTF-8", "a NaN or infinite number", "a table key that is an infinite
 * number", "nested too deeply (or a cycle)", "a table with both ... ").
 * A float key is written as its exact text ("0.30000000000000004"). */
int eddy_json_encode(lua_State *L, int idx, eddy_buf *out, char *err, size_t errlen);

/* Pushes the value of the JSON text s[0..n).  Numbers without a fraction
 * or exponent that fit in 64 bits are integers, others floats; null is
 * the light userdata NULL (lua-cjson's cjson.null); objects and arrays are
 * tables made at their final size.  Returns 0, or -1 with "what at byte N"
 * in err and nothing pushed. */
int eddy_json_decode(lua_State *L, const char *s, size_t n, char *err, size_t errlen);

#endif
