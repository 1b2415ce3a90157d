/*
 * lschema.h - event schemas compiled to C for eddy.core: the checking half
 * of lua/eddy/catalog.lua, which keeps the declarations, the checks of the
 * schemas themselves and the wording of every message.
 *
 * eddy.core.schema_compile(schema) takes a schema table that
 * eddy.catalog has already checked (a JSON Schema subset, docs/contracts.md)
 * and returns a compiled schema; s:check(value) walks a decoded JSON value
 * (or a handler's table) against it.  It returns nothing when the value
 * matches, else the first rule broken in a fixed order (the same the
 * messages name): kind ("type", "enum", "const", "minimum", "maximum",
 * "minLength", "maxLength", "required", "properties", "additionalProperties",
 * "minItems", "maxItems"), the path of the field ("items[1].sku", "" for the
 * value itself; for "required" and "additionalProperties" the field
 * missing or not allowed), the schema table of the rule, and the value.
 */
#ifndef EDDY_LSCHEMA_H
#define EDDY_LSCHEMA_H

#include <lua.h>

/* eddy.core.schema_compile(schema) -> a compiled schema (userdata). */
int eddy_lschema_compile(lua_State *L);

#endif
