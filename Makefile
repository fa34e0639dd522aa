# clmae: the two commands a person needs are `make demo` and `make test`;
# both install what they need first (scripts/install-deps.sh, idempotent).

BUILD_DIR ?= build
JOBS ?= 2
CMAKE_FLAGS ?=
CTEST_FLAGS ?=
DEMO_SPEC ?= examples/demo-fashion-mnist.yaml
VENV_PYTHON ?= .venv/bin/python
COMPARE_ARGS ?=

.PHONY: all deps build test test-engine demo compare bench bench-coordinator bench-metrics format format-check sanitize engine-only clean

all: build

deps:
	scripts/install-deps.sh

$(BUILD_DIR)/build.ninja:
	cmake -S . -B $(BUILD_DIR) -G Ninja $(CMAKE_FLAGS)

build: deps $(BUILD_DIR)/build.ninja
	cmake --build $(BUILD_DIR) -j $(JOBS)

# Every test suite (CPU; GPU-only cases skip without a device).
test: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS) $(CTEST_FLAGS)

# The main job on the embedded defaults: a local coordinator and two CPU
# agents train the tiny CL-MAE on Fashion-MNIST as a 2-rank job.
demo: build
	scripts/demo.sh $(BUILD_DIR) $(DEMO_SPEC)

# CL-MAE vs plain MAE on the same budget over seeds 0,1,2 (table and plots in
# runs/compare; rerunning resumes). COMPARE_ARGS: see scripts/compare.py --help.
compare: build
	$(VENV_PYTHON) scripts/compare.py --build $(BUILD_DIR) $(COMPARE_ARGS)

# make demo watched by a real Prometheus (127.0.0.1:9090, data in runs/monitor)
# with the alert rules of deploy/prometheus; prints how to point a Grafana at
# it (deploy/grafana). scripts/monitor.sh.
.PHONY: monitor
monitor: build
	scripts/monitor.sh $(BUILD_DIR) $(DEMO_SPEC)

# Engine benchmark: clmae vs the same step in PyTorch eager, same run.
bench: build
	scripts/bench-engine.sh $(BUILD_DIR)
	$(BUILD_DIR)/bench/clmae-bench-dist --threads 1

# Control-plane load (issue 4): 1,000 simulated agents x 8 GPUs and a stream
# of submissions against a real clmae-coordinator over loopback; kill -9 and
# recovery of the stored jobs. Figures, not pass/fail (docs/benchmarks.md).
bench-coordinator: deps $(BUILD_DIR)/build.ninja
	cmake --build $(BUILD_DIR) -j $(JOBS) --target clmae-bench-coordinator clmae-coordinator
	$(BUILD_DIR)/bench/clmae-bench-coordinator

# Checkpoint transfer (issues 5, 18): 256 MiB and 2 GiB uploaded and
# downloaded over loopback through the coordinator (grpc) and through
# presigned URLs to a SeaweedFS started by the bench (s3), against a plain
# local copy of the same bytes, with the coordinator's CPU and peak RSS.
.PHONY: bench-checkpoint
bench-checkpoint: deps $(BUILD_DIR)/build.ninja
	cmake --build $(BUILD_DIR) -j $(JOBS) --target clmae-bench-checkpoint clmae-coordinator
	$(BUILD_DIR)/bench/clmae-bench-checkpoint

# Metrics cost (issue 6): a coordinator scrape with 1,000 jobs (time, bytes)
# and the trainer's metric update as a share of a tiny-preset CPU iteration.
bench-metrics: deps $(BUILD_DIR)/build.ninja
	cmake --build $(BUILD_DIR) -j $(JOBS) --target clmae-bench-metrics
	$(BUILD_DIR)/bench/clmae-bench-metrics

# Evaluation during training: the tiny job trained with and without its
# periodic k-NN, same run; the overhead as a share of training time.
# JPEG decode + RandomResizedCrop images/s per core and the cores a GPU needs,
# against the same files through Pillow in the same run.
.PHONY: bench-loader
bench-loader: deps $(BUILD_DIR)/build.ninja
	cmake --build $(BUILD_DIR) -j $(JOBS) --target clmae-bench-loader
	rm -rf $(BUILD_DIR)/bench-loader-jpegs
	$(BUILD_DIR)/bench/clmae-bench-loader --save $(BUILD_DIR)/bench-loader-jpegs --loader cpu --workers $(JOBS)
	$(VENV_PYTHON) bench/loader_baseline.py $(BUILD_DIR)/bench-loader-jpegs

.PHONY: bench-eval
bench-eval: deps $(BUILD_DIR)/build.ninja
	cmake --build $(BUILD_DIR) -j $(JOBS) --target clmae-bench-eval
	$(BUILD_DIR)/bench/clmae-bench-eval --spec examples/tiny-fashion-mnist.yaml --repeats 2

# The chaos suite (docs/reliability.md): kill -9 of trainers, agents and the
# coordinator, a stopped rank, damaged checkpoints, a busy rendezvous port, a
# drain across a restart, a full disk and submissions during a crash, each
# against a real coordinator and two CPU agents; prints a table and fails if a
# goal is not met (about 5-10 minutes). Not part of `make test`, and it does
# not build: it runs the binaries already in BUILD_DIR.
# CHAOS_FLAGS: --seed N, --only NAME,... (--list), --keep, --work DIR.
CHAOS_FLAGS ?=
.PHONY: chaos
chaos:
	/usr/bin/python3 tests/chaos/chaos.py $(BUILD_DIR) $(CHAOS_FLAGS)

# ASan + UBSan build and tests in build-sanitize/.
sanitize:
	$(MAKE) test BUILD_DIR=build-sanitize CMAKE_FLAGS="-DCLMAE_SANITIZE=ON"

# libFuzzer targets (tests/fuzz) built with clang in build-fuzz/, each run for
# FUZZ_SECONDS (findings and the grown corpus in runs/fuzz/). fuzz-regressions
# replays the seed corpus and every past finding once (CI does).
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?=
.PHONY: fuzz fuzz-regressions
fuzz: deps
	scripts/fuzz.sh --seconds $(FUZZ_SECONDS) --parallel $(JOBS) $(FUZZ_TARGETS)
fuzz-regressions: deps
	scripts/fuzz.sh --regressions-only --parallel $(JOBS) $(FUZZ_TARGETS)

# Engine + benchmark only (LibTorch + Abseil), as on a GPU machine.
engine-only:
	$(MAKE) build BUILD_DIR=build-engine CMAKE_FLAGS="-DCLMAE_ENGINE_ONLY=ON"

format: deps
	git ls-files '*.cc' '*.h' | xargs clang-format -i

# Every C++ file as clang-format (.clang-format, Google style) would write it;
# CI runs this.
format-check: deps
	git ls-files '*.cc' '*.h' | xargs clang-format --dry-run -Werror

# Both container images built with podman (a local Debian base is
# bootstrapped when no registry is reachable; CLMAE_BASE_IMAGE overrides it),
# each started once with --help. Needs root. scripts/build-images.sh.
.PHONY: images
images:
	scripts/build-images.sh

# The clean-room check: a bare Debian 12 root (debootstrap) installs deps.lock
# and configures every target, without a system CUDA toolkit. Needs root and
# the network; a few minutes. CI runs it.
.PHONY: check-fresh-debian
check-fresh-debian:
	scripts/check-fresh-debian.sh

clean:
	rm -rf $(BUILD_DIR) build-sanitize build-engine
