# AI2IN — top-level build. `make` builds everything into build/; `make run` builds, makes
# the base template if it is missing and starts the engine; `make test` runs everything CI runs.
# `make SANITIZE=1` builds with ASan + UBSan into build-san/ (the agent, which is static,
# gets UBSan only).

CC ?= cc
SANITIZE ?= 0
BUILD ?= $(if $(filter 1,$(SANITIZE)),build-san,build)
BIN := $(BUILD)/bin
OBJ := $(BUILD)/obj

WARN := -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter -Wformat=2 -Wno-format-truncation -Wvla
# libpq's header directory (Debian: /usr/include/postgresql), from pkg-config.
PQ_CFLAGS := $(shell pkg-config --cflags libpq 2>/dev/null || echo -I/usr/include/postgresql)
CFLAGS_BASE := -std=gnu17 -D_GNU_SOURCE -g -O2 -fno-omit-frame-pointer $(WARN) -I. -Icommon -Iengine $(PQ_CFLAGS)
ifeq ($(SANITIZE),1)
SAN := -fsanitize=address,undefined -fno-sanitize-recover=undefined
AGENT_SAN := -fsanitize=undefined -fsanitize-undefined-trap-on-error
else
CFLAGS_BASE += -D_FORTIFY_SOURCE=2 -fstack-protector-strong
endif
CFLAGS ?=
CFLAGS += $(CFLAGS_BASE)

COMMON_SRC := $(wildcard common/*.c)
ENGINE_SRC := $(wildcard engine/*.c engine/*/*.c)
AGENT_SRC := $(wildcard agent/*.c agent/*/*.c)
ENGINE_LIBS := -lmicrohttpd -ljansson -lsqlite3 -lpq -lssl -lcrypto -lipset -lpthread
# libzmq (Jupyter kernels) linked statically with what Debian's libzmq.a needs, minus
# GSSAPI (no static library in Debian; agent/kernel/gss-stub.c stands in for it).
ZMQ_STATIC_LIBS := -lzmq -lsodium -lpgm -lnorm -lprotokit -lxml2 -licui18n -licuuc -licudata -lz -llzma -lbsd -lmd -lstdc++ -lm
AGENT_LIBS := -ljansson $(ZMQ_STATIC_LIBS) -lpthread -lutil

ENGINE_OBJ := $(patsubst %.c,$(OBJ)/engine/%.o,$(COMMON_SRC) $(ENGINE_SRC))
AGENT_OBJ := $(patsubst %.c,$(OBJ)/agent/%.o,$(COMMON_SRC) $(AGENT_SRC))

UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))
# Everything of the engine but main.c, for linking unit tests against.
ENGINE_LIB_OBJ := $(filter-out $(OBJ)/engine/engine/main.o,$(ENGINE_OBJ))

# libFuzzer harnesses (tests/fuzz/, scripts/fuzz.sh): clang with ASan + UBSan into build-fuzz/.
FUZZ_DIR := build-fuzz
FUZZ_CC := clang
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=undefined -ftrivial-auto-var-init=pattern
FUZZ_CFLAGS := -std=gnu17 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer $(filter-out -Wno-format-truncation,$(WARN)) -Wno-format-nonliteral -I. -Icommon -Iengine -Iagent $(PQ_CFLAGS) \
	-DJUPYTER_LAZY_STREAM_MIN=256 -DJUPYTER_STREAM_EVENT_MAX=64 $(FUZZ_SAN) -fsanitize=fuzzer-no-link
FUZZ_COMMON := $(patsubst %.c,$(FUZZ_DIR)/obj/%.o,$(COMMON_SRC))
FUZZ_ENGINE := $(patsubst %.c,$(FUZZ_DIR)/obj/%.o,$(filter-out engine/main.c,$(ENGINE_SRC)))
FUZZ_TARGETS := http_head chunked relay agent_stream agent_http jupyter layer_frames dnsmsg checkpoint
FUZZ_BIN := $(patsubst %,$(FUZZ_DIR)/fuzz_%,$(FUZZ_TARGETS))

.PHONY: all deps run test unit integration clean template format fuzz
all: $(BIN)/ai2ind $(BIN)/ai2in-agent

# Every target that compiles first installs what is missing (scripts/install-deps.sh; a
# no-op when everything is there), once per build directory: `make`, `make run`,
# `make SANITIZE=1` and `make fuzz` work on a machine that has only Debian, git and make.
# Building and running need fewer packages than testing.
$(BUILD)/.deps-installed: scripts/install-deps.sh
	scripts/install-deps.sh
	@mkdir -p $(@D) && touch $@

# Unit tests and fuzzers need the test packages too (cmocka, clang).
$(BUILD)/.test-deps-installed $(FUZZ_DIR)/.deps-installed: scripts/install-deps.sh
	scripts/install-deps.sh --test
	@mkdir -p $(@D) && touch $@

$(BIN)/ai2ind: $(ENGINE_OBJ)
	@mkdir -p $(@D)
	$(CC) $(SAN) -o $@ $^ $(ENGINE_LIBS)

$(BIN)/ai2in-agent: $(AGENT_OBJ)
	@mkdir -p $(@D)
	$(CC) $(AGENT_SAN) -static -o $@ $^ $(AGENT_LIBS)

$(OBJ)/engine/%.o: %.c | $(BUILD)/.deps-installed
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(SAN) -MMD -MP -c -o $@ $<

$(OBJ)/agent/%.o: %.c | $(BUILD)/.deps-installed
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -Iagent $(AGENT_SAN) -MMD -MP -c -o $@ $<

# -MMD: a test that #includes agent sources is rebuilt when they change.
$(BUILD)/tests/%: tests/unit/%.c $(ENGINE_LIB_OBJ) | $(BUILD)/.test-deps-installed
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -Iagent $(SAN) -MMD -MP -MF $@.d -o $@ $< $(ENGINE_LIB_OBJ) $(ENGINE_LIBS) -lcmocka

-include $(shell find $(BUILD)/obj $(BUILD)/tests $(FUZZ_DIR) -name '*.d' 2>/dev/null)

fuzz: $(FUZZ_BIN)

$(FUZZ_DIR)/obj/%.o: %.c | $(FUZZ_DIR)/.deps-installed
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -MMD -MP -c -o $@ $<

$(FUZZ_DIR)/fuzz_%: tests/fuzz/fuzz_%.c | $(FUZZ_DIR)/.deps-installed
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -MMD -MP -MF $@.d -o $@ $(filter %.c %.o,$^) $(FUZZ_LIBS)

$(FUZZ_DIR)/fuzz_http_head $(FUZZ_DIR)/fuzz_chunked: $(FUZZ_COMMON)
$(FUZZ_DIR)/fuzz_relay $(FUZZ_DIR)/fuzz_agent_stream: $(FUZZ_COMMON) $(FUZZ_ENGINE)
$(FUZZ_DIR)/fuzz_relay $(FUZZ_DIR)/fuzz_agent_stream: FUZZ_LIBS := $(ENGINE_LIBS)
$(FUZZ_DIR)/fuzz_layer_frames: $(FUZZ_DIR)/obj/engine/cluster/layer-stream.o
$(FUZZ_DIR)/fuzz_dnsmsg: $(FUZZ_DIR)/obj/engine/net/dnsmsg.o
$(FUZZ_DIR)/fuzz_agent_http: $(FUZZ_COMMON) $(FUZZ_DIR)/obj/agent/http.o $(FUZZ_DIR)/obj/agent/utf8.o
$(FUZZ_DIR)/fuzz_agent_http: FUZZ_LIBS := -ljansson -lpthread
$(FUZZ_DIR)/fuzz_checkpoint: $(FUZZ_COMMON) $(FUZZ_DIR)/obj/agent/checkpoint.o $(FUZZ_DIR)/obj/agent/http.o $(FUZZ_DIR)/obj/agent/utf8.o
$(FUZZ_DIR)/fuzz_checkpoint: FUZZ_LIBS := -ljansson -lpthread
$(FUZZ_DIR)/fuzz_jupyter: $(FUZZ_COMMON) $(FUZZ_DIR)/obj/agent/kernel/jupyter.o $(FUZZ_DIR)/obj/agent/utf8.o
$(FUZZ_DIR)/fuzz_jupyter: FUZZ_LIBS := -ljansson -lsodium -lpthread

deps:
	scripts/install-deps.sh

# Builds, makes the base template if missing, starts the engine in the foreground.
run: all
	scripts/run.sh

# The store's tests run against SQLite and, with a throwaway PostgreSQL server when this
# machine has one and make runs as root (scripts/test-postgres.sh), against PostgreSQL too.
unit: $(UNIT_BIN)
	@scripts/test-postgres.sh --if-available sh -c 'set -e; for t in $(UNIT_BIN); do echo "== $$t"; $$t; done'

# The integration and isolation suites against the real engine (as root; make test runs them
# with both builds).
integration: all
	/usr/bin/python3 -m pytest -q -p no:cacheprovider tests/integration
	/usr/bin/python3 -m pytest -q -p no:cacheprovider tests/security

test:
	scripts/test.sh

format:
	clang-format -i $(COMMON_SRC) $(ENGINE_SRC) $(AGENT_SRC) $(wildcard */*.h */*/*.h)

clean:
	rm -rf build build-san build-fuzz
