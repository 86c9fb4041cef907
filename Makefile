# FlowForce quick start: `make demo` and `make test` on a fresh Debian 12 machine.
# Both install what is missing (Debian packages), configure into build/, build with all cores, and run.

BUILD_DIR ?= build
JOBS      ?= $(shell nproc 2>/dev/null || echo 2)
PYTHON    ?= /usr/bin/python3
CMAKE_ARGS ?=
DEMO_DIR  ?= demo

.PHONY: all deps configure build demo toy test clean

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
