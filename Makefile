# luray build. `make` builds into build/; `make demo`, `make test`, `make bench` set up what is
# missing first. SANITIZE=1 builds with ASan and UBSan into build-san/ instead.

PREFIX ?= /usr/local
SANITIZE ?= 0

ifeq ($(SANITIZE),1)
BUILD ?= build-san
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
OPT := -O1 -g
else
BUILD ?= build
SANFLAGS :=
OPT := -O2 -g
endif

CC ?= cc
PKGS := lua5.4 libuv nanomsg libcjson libsodium
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CFLAGS := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter $(OPT) -fPIC \
	-Icore -Iinclude $(SANFLAGS)
LDFLAGS := $(SANFLAGS)
LIBS = $(PKG_LIBS) -lreadline -lm -lpthread -ldl

BIN := $(BUILD)/bin/luray
CORE_SRC := $(filter-out core/main.c,$(wildcard core/*.c))
CORE_OBJ := $(CORE_SRC:%.c=$(BUILD)/obj/%.o)
CORE_LIB := $(BUILD)/obj/libluraycore.a
# nn_cuda is built by the nvcc section below, only where nvcc is found.
PLUGINS := $(filter-out nn_cuda,$(notdir $(wildcard plugins/*)))
PLUGIN_SO := $(PLUGINS:%=$(BUILD)/lib/luray/plugins/%.so)
LUALIB_SRC := $(shell find lualib -name '*.lua' 2>/dev/null)
LUALIB_OUT := $(LUALIB_SRC:lualib/%=$(BUILD)/share/luray/lua/%)
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
# Unit tests named test_<plugin>_*.c also link that plugin's C files that hold no Lua binding
# (every plugins/<name>/*.c but lua_*.c).
PLUGIN_C = $(filter-out plugins/$(1)/lua_%.c,$(wildcard plugins/$(1)/*.c))
TOOL_SRC := $(wildcard tests/tools/*.c)
TOOL_BIN := $(TOOL_SRC:tests/tools/%.c=$(BUILD)/tests/tools/%)
FIXTURE_SRC := $(wildcard tests/plugins/*.c)
FIXTURE_SO := $(FIXTURE_SRC:tests/plugins/%.c=$(BUILD)/tests/plugins/%.so)

.PHONY: all deps demo test bench bench-peers install clean fuzz check-deps

all: check-deps $(BIN) $(PLUGIN_SO) $(LUALIB_OUT)

deps:
	@scripts/install-deps.sh

check-deps:
	@pkg-config --exists $(PKGS) || { echo "luray: missing build dependencies; run 'make deps' (or 'make test'/'make demo', which install them)" >&2; exit 1; }

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -MMD -MP -c $< -o $@

$(CORE_LIB): $(CORE_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BIN): $(BUILD)/obj/core/main.o $(CORE_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -rdynamic -o $@ $^ $(LIBS)

# A plugin is every .c file of plugins/<name>/, built -fvisibility=hidden against include/ only.
.SECONDEXPANSION:
$(BUILD)/lib/luray/plugins/%.so: $$(wildcard plugins/%/*.c) $$(wildcard plugins/%/*.h) $(wildcard include/luray/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(PLUGIN_CFLAGS_$*) -fvisibility=hidden $(PKG_CFLAGS) -shared -o $@ $(filter %.c,$^) $(LDFLAGS) $(shell pkg-config --libs lua5.4) $(PLUGIN_LIBS_$*) -lm

# Libraries a plugin links besides Lua, and extra flags, by plugin name. The data plugin's
# column loops only vectorize at -O3 with GCC 12.
PLUGIN_LIBS_data = $(shell pkg-config --libs libcjson 2>/dev/null)
PLUGIN_LIBS_collective = $(shell pkg-config --libs libcjson nanomsg) -lrt
# libxgboost (with its OpenMP threads and static state) cannot be unloaded from a process safely.
PLUGIN_LIBS_xgboost = -lxgboost -Wl,-z,nodelete
PLUGIN_LIBS_nn = $(shell pkg-config --libs openblas)
PLUGIN_LIBS_serve = $(shell pkg-config --libs libcjson nanomsg libuv) -lhttp_parser
ifneq ($(SANITIZE),1)
PLUGIN_CFLAGS_data = -O3
PLUGIN_CFLAGS_nn = -O3
endif

# ---- nvcc: the nn_cuda plugin (the CUDA backend of luray.nn) -----------------------------------
# Built only when nvcc is found (/usr/local/cuda/bin/nvcc, else nvcc on PATH; `make NVCC=` skips
# it): its .cu kernels by nvcc for sm_90 (H100, H200) plus PTX that newer GPUs compile at load,
# linked -z nodelete because the CUDA runtime cannot be unloaded and loaded again in a process,
# its .c files by cc like any plugin, linked against cuBLAS and the CUDA runtime. The kernels are
# not sanitized under SANITIZE=1; the C files are. It also compiles the CPU plugin's files that
# both backends share (NN_SHARED_C): shapes and the broadcasting iterator, the optimizers' options
# and Adam constants, and the Lua argument checks; it does not link against nn.so.
ifeq ($(origin NVCC),undefined)
NVCC := $(firstword $(wildcard /usr/local/cuda/bin/nvcc) $(shell command -v nvcc 2>/dev/null))
endif
ifneq ($(NVCC),)
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
NVCC_ARCH ?= -gencode arch=compute_90,code=[sm_90,compute_90]
NVCC_FLAGS := -std=c++17 -O3 $(NVCC_ARCH) -Xcompiler -fPIC,-fvisibility=hidden,-Wall,-Wextra \
	-Iinclude
NN_CUDA_SO := $(BUILD)/lib/luray/plugins/nn_cuda.so
NN_CUDA_OBJ := $(patsubst %.cu,$(BUILD)/obj/%.cu.o,$(wildcard plugins/nn_cuda/*.cu))
NN_SHARED_C := plugins/nn/nn_shape.c plugins/nn/nn_optim.c plugins/nn/lua_args.c
NN_CUDA_DEPS := $(wildcard plugins/nn_cuda/*.h plugins/nn_cuda/*.cuh include/luray/*.h) \
	$(NN_SHARED_C:.c=.h)
all: $(NN_CUDA_SO)
$(BUILD)/obj/plugins/nn_cuda/%.cu.o: plugins/nn_cuda/%.cu $(NN_CUDA_DEPS)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCC_FLAGS) -c $< -o $@
$(NN_CUDA_SO): $(wildcard plugins/nn_cuda/*.c) $(NN_SHARED_C) $(NN_CUDA_OBJ) $(NN_CUDA_DEPS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -fvisibility=hidden -I$(CUDA_HOME)/include $(PKG_CFLAGS) -shared -o $@ \
		$(filter %.c %.o,$^) $(LDFLAGS) $(shell pkg-config --libs lua5.4) \
		-L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -Wl,-z,nodelete -lcublas -lcudart -lstdc++ -lm
endif
# ------------------------------------------------------------------------------------------------

$(BUILD)/share/luray/lua/%: lualib/%
	@mkdir -p $(dir $@)
	cp $< $@

$(BUILD)/tests/%: tests/unit/%.c $(CORE_LIB) $$(call PLUGIN_C,$$(word 2,$$(subst _, ,$$*)))
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -Iplugins -o $@ $(filter %.c,$^) $(CORE_LIB) $(LDFLAGS) $(LIBS) \
		$(PLUGIN_LIBS_$(word 2,$(subst _, ,$*))) -lcmocka

$(BUILD)/tests/plugins/%.so: tests/plugins/%.c $(wildcard include/luray/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -fvisibility=hidden $(PKG_CFLAGS) -shared -o $@ $< $(LDFLAGS) $(shell pkg-config --libs lua5.4)

# libFuzzer targets need clang; built only by `make fuzz` and by the test runner. A target links
# the core and one plugin's C files (FUZZ_PLUGIN_<target>, default data).
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN := $(FUZZ_SRC:tests/fuzz/%.c=$(BUILD)/fuzz/%)
FUZZ_CORE := $(filter-out core/main.c core/repl.c,$(wildcard core/*.c))
FUZZ_PLUGIN = $(or $(FUZZ_PLUGIN_$(1)),data)
FUZZ_PLUGIN_fuzz_safetensors = collective
FUZZ_PLUGIN_fuzz_http = serve
fuzz: $(FUZZ_BIN)
$(BUILD)/fuzz/%: tests/fuzz/%.c $(FUZZ_CORE) $$(call PLUGIN_C,$$(call FUZZ_PLUGIN,$$*)) \
		$(wildcard tests/fuzz/*.h)
	@mkdir -p $(dir $@)
	clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -Icore -Iinclude \
		-Iplugins $(PKG_CFLAGS) -o $@ $(filter %.c,$^) $(LIBS) \
		$(PLUGIN_LIBS_$(call FUZZ_PLUGIN,$*))

# Small programs the tests drive (a raw HTTP client).
$(BUILD)/tests/tools/%: tests/tools/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(LDFLAGS)

unit: $(UNIT_BIN) $(FIXTURE_SO) $(TOOL_BIN)

demo: deps
	@$(MAKE) --no-print-directory all
	$(BIN) run scripts/demo.lua

test: deps
	@$(MAKE) --no-print-directory all unit
	@LURAY_BUILD=$(BUILD) SANITIZE=$(SANITIZE) tests/run.sh

bench:
	@scripts/install-deps.sh bench
	@$(MAKE) --no-print-directory all
	@LURAY_BUILD=$(BUILD) scripts/bench/run.sh

bench-peers:
	@scripts/install-deps.sh bench
	@$(MAKE) --no-print-directory all
	@LURAY_BUILD=$(BUILD) scripts/bench/peers/run.sh

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/luray/plugins \
		$(DESTDIR)$(PREFIX)/share/luray $(DESTDIR)$(PREFIX)/include/luray
	install -m 755 $(BIN) $(DESTDIR)$(PREFIX)/bin/luray
	cp -r $(BUILD)/lib/luray/plugins/. $(DESTDIR)$(PREFIX)/lib/luray/plugins/
	cp -r $(BUILD)/share/luray/lua $(DESTDIR)$(PREFIX)/share/luray/
	install -m 644 include/luray/*.h $(DESTDIR)$(PREFIX)/include/luray/

clean:
	rm -rf build build-san

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
