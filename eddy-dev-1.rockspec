rockspec_format = "3.0"
package = "eddy"
version = "dev-1"
source = {
  url = "git+file:///dev/null",
}
description = {
  summary = "Event-driven systems as small Lua scripts, on an embedded event log or Kafka",
  detailed = [[
eddy is a C runtime embedding Lua 5.4: consumers, saga steps and choreography
rules are Lua scripts; the C core does partitioning, per-key ordering, dedupe,
the outbox, retries and quarantine.  This rock installs the eddy binary, the
eddy.core C module and the eddy Lua library.
]],
  license = "MIT",
}
dependencies = {
  "lua >= 5.4",
}
external_dependencies = {
  SQLITE = { header = "sqlite3.h" },
  RDKAFKA = { header = "librdkafka/rdkafka.h" },
  UV = { header = "uv.h" },
}
build = {
  type = "make",
  build_target = "binaries",
  build_variables = {
    CFLAGS = "$(CFLAGS)",
    LUA_INCDIR = "$(LUA_INCDIR)",
  },
  install_target = "install",
  install_variables = {
    INST_BINDIR = "$(BINDIR)",
    INST_LIBDIR = "$(LIBDIR)",
    INST_LUADIR = "$(LUADIR)",
  },
}
test = {
  type = "command",
  command = "make test",
}
