# eddy - build, test, install.  Every variable below can be overridden on the
# command line or in the environment (make PREFIX=/opt/eddy install).

PREFIX      ?= /usr/local
DESTDIR     ?=
BINDIR      ?= $(PREFIX)/bin
LUA_LIBDIR  ?= $(PREFIX)/lib/lua/5.4
LUA_DIR     ?= $(PREFIX)/share/lua/5.4
# LuaRocks passes its own directories through these.
INST_BINDIR ?= $(DESTDIR)$(BINDIR)
INST_LIBDIR ?= $(DESTDIR)$(LUA_LIBDIR)
INST_LUADIR ?= $(DESTDIR)$(LUA_DIR)

CC          ?= cc
LUA         ?= lua5.4
BUSTED      ?= /usr/bin/busted
BUILD       ?= build
CFLAGS      ?= -O2 -g
LDFLAGS     ?=
EDDY_VERSION ?= 0.1.0-dev
LUA_INCDIR  ?= /usr/include/lua5.4
SUDO        ?= $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Debian 12 packages eddy needs to build, test and demo.
DEB_PACKAGES ?= gcc make pkg-config lua5.4 liblua5.4-dev libuv1-dev \
  librdkafka-dev libsqlite3-dev lua-busted lua-cjson luarocks kcat lua-check \
  sqlite3 libmimalloc-dev openjdk-17-jre-headless maven prometheus curl \
  clang libclang-rt-14-dev

WARN     = -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror
CPPFLAGS_ALL = -I$(LUA_INCDIR) -Iruntime -DEDDY_VERSION='"$(EDDY_VERSION)"'
# The binary's allocator: glibc's malloc cost the consumer runtime 11% of its
# speed (docs/runtime.md).  Linked first, mimalloc serves every library in the
# process.  Empty under the sanitizers, which bring their own.
MALLOC_LIB ?= -lmimalloc
LIBS     = -llua5.4 -luv -lrdkafka -lsqlite3 -lpthread -lm -ldl
MOD_LIBS = -luv -lrdkafka -lsqlite3 -lpthread

# The core: no Lua in these.
CORE   = errors store log headers partitioner uuid buf units state outbox kafka http \
         produce_line quarantine retry crashes inflight
# Lua bindings.
LBIND  = leddy llog ljson lschema lpattern
# The consumer runtime (needs Lua and libuv; only in the binary).
RUNTIME = runner worker sandbox lctx lmsg app reload control ksource krelay kcall metrics \
          connset admin guard
CLI    = cli cli_topic cli_produce cli_tail cli_run cli_dlq cli_state cli_reload cli_saga \
         cli_trace cli_catalog
LUA_LIB = $(sort $(wildcard lua/eddy/*.lua))

OBJ         = $(BUILD)/obj
CORE_OBJS   = $(CORE:%=$(OBJ)/%.o)
LBIND_OBJS  = $(LBIND:%=$(OBJ)/%.o)
CLI_OBJS    = $(CLI:%=$(OBJ)/%.o)
RUNTIME_OBJS = $(RUNTIME:%=$(OBJ)/%.o) $(OBJ)/embedded.o
HEADERS     = $(wildcard runtime/*.h)
# test/kmock.c, test/holdconn.c and test/crashmod.c are programs of their
# own, which the specs drive: the Kafka mock cluster, a client holding
# connections, and a Lua C module that crashes on purpose;
# test/tsan_threads.c is part of make test-tsan's eddy only.
TEST_SRCS   = $(filter-out test/kmock.c test/holdconn.c test/crashmod.c test/tsan_threads.c,\
                $(wildcard test/*.c))

.PHONY: all binaries deps test test-asan test-tsan bench demo install uninstall clean lint check-rockspec \
  kafka-up kafka-down bench-kafka fuzz fuzz-build fuzz-corpus

all: binaries $(BUILD)/test-runner $(BUILD)/kmock $(BUILD)/holdconn $(BUILD)/test/crashmod.so

# What gets installed: the binary and the Lua C module.
binaries: $(BUILD)/eddy $(BUILD)/lib/eddy/core.so

$(OBJ)/%.o: runtime/%.c $(HEADERS) | $(OBJ)
	$(CC) $(WARN) $(CFLAGS) -fPIC $(CPPFLAGS_ALL) -c $< -o $@

$(OBJ):
	mkdir -p $@ $(BUILD)/lib/eddy

# The Lua library is compiled into the binary (tools/embed.lua).
$(BUILD)/gen/embedded.c: tools/embed.lua $(LUA_LIB)
	@mkdir -p $(BUILD)/gen
	$(LUA) tools/embed.lua $@ $(LUA_LIB)

$(OBJ)/embedded.o: $(BUILD)/gen/embedded.c runtime/embedded.h | $(OBJ)
	$(CC) $(WARN) $(CFLAGS) -fPIC $(CPPFLAGS_ALL) -c $< -o $@

# EXTRA_OBJS: objects only one build links in (test/tsan_threads.c).
EXTRA_OBJS ?=
$(BUILD)/eddy: $(OBJ)/main.o $(CLI_OBJS) $(RUNTIME_OBJS) $(LBIND_OBJS) $(CORE_OBJS) $(EXTRA_OBJS)
	$(CC) $(CFLAGS) $(LDFLAGS) -Wl,-E $^ -o $@ $(MALLOC_LIB) $(LIBS)

$(OBJ)/tsan_threads.o: test/tsan_threads.c | $(OBJ)
	$(CC) $(WARN) $(CFLAGS) -c $< -o $@

$(BUILD)/lib/eddy/core.so: $(LBIND_OBJS) $(CORE_OBJS)
	$(CC) $(CFLAGS) $(LDFLAGS) -shared $^ -o $@ $(MOD_LIBS)

$(BUILD)/test-runner: $(TEST_SRCS) $(wildcard test/*.h) $(CORE_OBJS) $(OBJ)/ljson.o \
  $(OBJ)/lpattern.o
	$(CC) $(WARN) $(CFLAGS) $(CPPFLAGS_ALL) -Itest $(TEST_SRCS) $(CORE_OBJS) \
	  $(OBJ)/ljson.o $(OBJ)/lpattern.o -o $@ $(LDFLAGS) $(MOD_LIBS) -llua5.4 -lm

# A librdkafka mock cluster driven from stdin, for spec/kafka_mock_spec.lua.
$(BUILD)/kmock: test/kmock.c | $(OBJ)
	$(CC) $(WARN) $(CFLAGS) $< -o $@ $(LDFLAGS) -lrdkafka

# Opens many connections and holds them, for spec/admin_limits_spec.lua.
$(BUILD)/holdconn: test/holdconn.c | $(OBJ)
	$(CC) $(WARN) $(CFLAGS) $< -o $@ $(LDFLAGS)

# A C module that segfaults, aborts or hangs, for spec/crash_loop_spec.lua.
$(BUILD)/test/crashmod.so: test/crashmod.c | $(OBJ)
	@mkdir -p $(BUILD)/test
	$(CC) $(WARN) $(CFLAGS) -fPIC -shared -I$(LUA_INCDIR) $< -o $@ $(LDFLAGS)

# Installs whichever Debian packages are missing; does nothing when all are
# there.
deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" \
	    || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "make deps: installing$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

test: deps
	@$(MAKE) --no-print-directory all
	@BUILD=$(BUILD) LUA=$(LUA) BUSTED=$(BUSTED) sh test/run.sh

# The same suite under AddressSanitizer and UBSan, in its own build tree.
test-asan: deps
	@$(MAKE) --no-print-directory all BUILD=build-asan \
	  CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	  LDFLAGS="-fsanitize=address,undefined" MALLOC_LIB=
	@BUILD=build-asan LUA=$(LUA) BUSTED=$(BUSTED) EDDY_ASAN=1 sh test/run.sh

# The suite under ThreadSanitizer, in its own build tree: every spec runs
# the instrumented eddy binary, and a data race fails the run that has it.
# The specs' own Lua interpreter loads the plain build's module: the
# ThreadSanitizer runtime cannot be preloaded into the programs the specs
# start (sh, ls, mktemp), as AddressSanitizer's can.
test-tsan: deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory all BUILD=build-tsan \
	  CFLAGS="-O1 -g -fsanitize=thread -fno-omit-frame-pointer" \
	  LDFLAGS="-fsanitize=thread" MALLOC_LIB= EXTRA_OBJS=build-tsan/obj/tsan_threads.o
	@BUILD=build-tsan MODULE_BUILD=$(BUILD) LUA=$(LUA) BUSTED=$(BUSTED) EDDY_TSAN=1 \
	  sh test/run.sh

bench: deps
	@$(MAKE) --no-print-directory all
	@BUILD=$(BUILD) sh bench/run.sh

# eddy run on Kafka against kcat, on the test broker (started if not up).
bench-kafka: deps
	@$(MAKE) --no-print-directory all
	@BUILD=$(BUILD) sh bench/kafka.sh

demo: deps
	@$(MAKE) --no-print-directory all
	@BUILD=$(BUILD) sh examples/demo.sh

# A single-node Apache Kafka broker on 127.0.0.1:9092 (tools/kafka/kafka.sh):
# its jars come from Maven Central once, into .cache/kafka.
kafka-up: deps
	@sh tools/kafka/kafka.sh up

kafka-down:
	@sh tools/kafka/kafka.sh down

# libFuzzer harnesses (fuzz/<parser>.c) with ASan and UBSan, built with
# clang into $(FUZZ_BUILD).  `make fuzz` runs each for FUZZ_SECONDS from its
# corpus (fuzz/corpus/<parser>, plus what earlier runs found in
# $(FUZZ_BUILD)/corpus) and fails on a crash, saved under
# $(FUZZ_BUILD)/crashes.  Not part of `make test`: the suite needs no clang.
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 30
FUZZ_BUILD   ?= build-fuzz
FUZZ_CFLAGS  ?= -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined \
                -fno-sanitize-recover=undefined
# librdkafka's RD_KAFKA_V_END casts an int to a pointer, which clang warns of.
FUZZ_WARN    = -Wno-int-to-void-pointer-cast
FUZZERS      ?= http json headers units produce_line app
FUZZ_SRC_http         = runtime/http.c
FUZZ_SRC_json         = runtime/ljson.c runtime/buf.c
FUZZ_SRC_headers      = runtime/headers.c
FUZZ_SRC_units        = runtime/units.c
FUZZ_SRC_produce_line = runtime/produce_line.c
FUZZ_SRC_app          = runtime/sandbox.c $(LBIND:%=runtime/%.c) $(CORE:%=runtime/%.c) \
                        $(FUZZ_BUILD)/gen/embedded.c
FUZZ_LIBS_json        = -llua5.4 -lm
FUZZ_LIBS_app         = -llua5.4 $(MOD_LIBS) -lm -ldl

$(FUZZ_BUILD)/gen/embedded.c: tools/embed.lua $(LUA_LIB)
	@mkdir -p $(FUZZ_BUILD)/gen
	$(LUA) tools/embed.lua $@ $(LUA_LIB)

.SECONDEXPANSION:
$(FUZZ_BUILD)/fuzz-%: fuzz/%.c fuzz/fuzz.h $(HEADERS) $$(FUZZ_SRC_$$*)
	@mkdir -p $(FUZZ_BUILD)
	$(FUZZ_CC) $(WARN) $(FUZZ_WARN) $(FUZZ_CFLAGS) $(CPPFLAGS_ALL) -Ifuzz $< $(FUZZ_SRC_$*) -o $@ \
	  $(FUZZ_LIBS_$*)

fuzz-build: $(FUZZERS:%=$(FUZZ_BUILD)/fuzz-%)

fuzz: deps
	@$(MAKE) --no-print-directory fuzz-build
	@FUZZ_BUILD=$(FUZZ_BUILD) FUZZ_SECONDS=$(FUZZ_SECONDS) sh fuzz/run.sh $(FUZZERS)

# Merges what the runs found into the committed corpora, minimized (-merge=1
# keeps the fewest inputs that cover as much).
fuzz-corpus: fuzz-build
	@FUZZ_BUILD=$(FUZZ_BUILD) sh fuzz/run.sh --merge $(FUZZERS)

lint: all
	luacheck --codes lua spec examples handlers

install: binaries
	install -d $(INST_BINDIR) $(INST_LIBDIR)/eddy $(INST_LUADIR)/eddy
	install -m 755 $(BUILD)/eddy $(INST_BINDIR)/eddy
	install -m 755 $(BUILD)/lib/eddy/core.so $(INST_LIBDIR)/eddy/core.so
	install -m 644 lua/eddy/*.lua $(INST_LUADIR)/eddy/

uninstall:
	rm -f $(INST_BINDIR)/eddy $(INST_LIBDIR)/eddy/core.so
	rm -rf $(INST_LUADIR)/eddy

clean:
	rm -rf build build-asan build-tsan build-fuzz
