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
CFLAGS_BASE := -std=gnu17 -D_GNU_SOURCE -g -O2 -fno-omit-frame-pointer $(WARN) -I. -Icommon -Iengine
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
ENGINE_LIBS := -lmicrohttpd -ljansson -lsqlite3 -lcurl -lcrypto -lpthread
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

.PHONY: all deps run test unit integration clean template format
all: $(BIN)/ai2ind $(BIN)/ai2in-agent

$(BIN)/ai2ind: $(ENGINE_OBJ)
	@mkdir -p $(@D)
	$(CC) $(SAN) -o $@ $^ $(ENGINE_LIBS)

$(BIN)/ai2in-agent: $(AGENT_OBJ)
	@mkdir -p $(@D)
	$(CC) $(AGENT_SAN) -static -o $@ $^ $(AGENT_LIBS)

$(OBJ)/engine/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(SAN) -MMD -MP -c -o $@ $<

$(OBJ)/agent/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -Iagent $(AGENT_SAN) -MMD -MP -c -o $@ $<

# -MMD: a test that #includes agent sources is rebuilt when they change.
$(BUILD)/tests/%: tests/unit/%.c $(ENGINE_LIB_OBJ)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -Iagent $(SAN) -MMD -MP -MF $@.d -o $@ $< $(ENGINE_LIB_OBJ) $(ENGINE_LIBS) -lcmocka

-include $(shell find $(BUILD)/obj $(BUILD)/tests -name '*.d' 2>/dev/null)

deps:
	scripts/install-deps.sh

# Builds, makes the base template if missing, starts the engine in the foreground.
run: all
	scripts/run.sh

unit: $(UNIT_BIN)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; $$t; done

integration: all
	scripts/integration.sh

test:
	scripts/test.sh

format:
	clang-format -i $(COMMON_SRC) $(ENGINE_SRC) $(AGENT_SRC) $(wildcard */*.h */*/*.h)

clean:
	rm -rf build build-san
