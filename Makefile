# FlowForce quick start: `make demo` and `make test` on a fresh Debian 12 machine.
# Both install what is missing (Debian packages), configure into build/, build with all cores, and run.

BUILD_DIR ?= build
JOBS      ?= $(shell nproc 2>/dev/null || echo 2)
PYTHON    ?= /usr/bin/python3
CMAKE_ARGS ?=
DEMO_DIR  ?= demo

.PHONY: all deps configure build demo toy test clean fuzz fuzz-build fuzz-seeds

all: build

deps:
	@bash scripts/install-deps.sh

$(BUILD_DIR)/CMakeCache.txt:
	cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=Release -DPython3_EXECUTABLE=$(PYTHON) $(CMAKE_ARGS)

configure: deps $(BUILD_DIR)/CMakeCache.txt

build: configure
	cmake --build $(BUILD_DIR) -j $(JOBS)

# The main job on the built-in default (see README.md for what it prints).
demo: build
	PYTHON=$(PYTHON) bash scripts/demo.sh $(BUILD_DIR) $(DEMO_DIR)

# The paper's 2-D examples (section 6.1): smooth vs spline flows on the ring and torus energies.
toy: build
	@mkdir -p $(DEMO_DIR)
	$(BUILD_DIR)/bin/flowforce toy --energy rings --plots $(DEMO_DIR)/toy-rings --json $(DEMO_DIR)/toy-rings.json
	$(BUILD_DIR)/bin/flowforce toy --energy torus --plots $(DEMO_DIR)/toy-torus --json $(DEMO_DIR)/toy-torus.json

test: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS)

clean:
	rm -rf $(BUILD_DIR)

# Fuzzing (README.md, "Fuzzing"): libFuzzer targets of the three loaders (model files, H5MD, FlowForce
# XML), built with clang and ASan + UBSan in their own build folder (only the fuzz targets and what they
# need: no LibTorch), each run for FUZZ_RUNS executions (at most FUZZ_MAX_TIME s) from the seeds in
# tests/fuzz/corpus. Any finding fails. Needs clang-14 and libclang-rt-14-dev.
FUZZ_DIR      ?= build-fuzz
FUZZ_CC       ?= clang-14
FUZZ_CXX      ?= clang++-14
FUZZ_JOBS     ?= 2
FUZZ_RUNS     ?= 100000
FUZZ_MAX_TIME ?= 600

$(FUZZ_DIR)/CMakeCache.txt:
	cmake -S . -B $(FUZZ_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=$(FUZZ_CC) -DCMAKE_CXX_COMPILER=$(FUZZ_CXX) \
	  -DFLOWFORCE_FUZZ=ON -DFLOWFORCE_BUILD_TESTS=OFF -DFLOWFORCE_BUILD_BENCHMARKS=OFF -DPython3_EXECUTABLE=$(PYTHON)

fuzz-build: $(FUZZ_DIR)/CMakeCache.txt
	cmake --build $(FUZZ_DIR) -j $(FUZZ_JOBS) --target flowforce_fuzz

fuzz: fuzz-build
	bash tests/fuzz/run.sh $(FUZZ_DIR) $(FUZZ_RUNS) $(FUZZ_MAX_TIME)

# Rewrites the generated seeds (model files, XML). The H5MD seeds are layouts (tests/fuzz/FuzzH5MD.h).
fuzz-seeds: $(FUZZ_DIR)/CMakeCache.txt
	cmake --build $(FUZZ_DIR) -j $(FUZZ_JOBS) --target flowforce_fuzz_make_seeds
	$(FUZZ_DIR)/bin/flowforce_fuzz_make_seeds tests/fuzz/corpus
