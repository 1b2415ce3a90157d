/*
 * cli_catalog.c - eddy catalog check | docs | export: the event catalog's
 * commands, written in Lua (lua/eddy/catalog_tools.lua) and run like the
 * saga commands (eddy_cli_run_tool).
 */
#include "cli.h"

#include <stddef.h>

static int run_check(const eddy_cli_args *a) {
  static const char *const opts[] = { "json", NULL };
  return eddy_cli_run_tool(a, "catalog_check", NULL, opts);
}

static int run_docs(const eddy_cli_args *a) {
  static const char *const opts[] = { "output", NULL };
  return eddy_cli_run_tool(a, "catalog_docs", NULL, opts);
}

static int run_export(const eddy_cli_args *a) {
  static const char *const opts[] = { "output", NULL };
  return eddy_cli_run_tool(a, "catalog_export", NULL, opts);
}

const eddy_cli_cmd eddy_cmd_catalog_check = {
  "catalog check", "OLD NEW [--json]",
  "list the backward-incompatible changes between two event catalogs",
  "OLD and NEW are each an app file (its eddy.event declarations) or a catalog\n"
  "saved with eddy catalog export.  Prints every change, incompatible ones\n"
  "first: a field removed, a type changed, a new required field, an enum\n"
  "narrowed, a limit tightened, a version number reused with a different\n"
  "schema, an event type removed.  Exits 1 when there is an incompatible\n"
  "change, 0 when there is none: a check for CI.  OLD or NEW that cannot be\n"
  "read is exit 1 too, with one line on stderr and nothing on stdout.\n",
  (const eddy_cli_opt[]){
    { "json", 'j', NULL, "one JSON object per change: incompatible, type, version, change" },
    { 0 } },
  2, 2, run_check
};

const eddy_cli_cmd eddy_cmd_catalog_docs = {
  "catalog docs", "[APP] [-o FILE]",
  "the event catalog as Markdown: types, versions, schemas, owners, SLAs, flow",
  "Loads the app (default ./eddy.lua) without running it, or reads a saved\n"
  "catalog, and writes Markdown: a table of every event type, then each type\n"
  "with its owner, producers, consumers, SLA and every version's fields, and\n"
  "the flow diagram (mermaid).\n",
  (const eddy_cli_opt[]){
    { "output", 'o', "FILE", "write to FILE instead of standard output" }, { 0 } },
  0, 1, run_docs
};

const eddy_cli_cmd eddy_cmd_catalog_export = {
  "catalog export", "[APP] [-o FILE]",
  "the app's event catalog as JSON, to keep and check against later",
  "Loads the app (default ./eddy.lua) without running it and writes its\n"
  "declared events (schemas, owners, SLAs, producers and consumers) as JSON\n"
  "with sorted keys.  Commit the file; eddy catalog check SAVED eddy.lua then\n"
  "tells whether a change breaks what was released.\n",
  (const eddy_cli_opt[]){
    { "output", 'o', "FILE", "write to FILE instead of standard output" }, { 0 } },
  0, 1, run_export
};
