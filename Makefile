# kdkit pipeline. The recipes only chain tool calls; all logic lives in the tools.
#
#   make                    teacher + baseline student on Fashion-MNIST, evaluated, report.md;
#                           FKD region labels packed from the teacher (labels.h5)
#   make PROFILE=full       the long GPU recipe (ResNet-56 teacher, ResNet-20 student)
#   make DEVICE=cpu         choose the device (auto | cpu | wgpu[:N] | cuda[:N])
#   make test               the test suite (CI runs this)
#   make bench              throughput table
#
# Binaries are built with the workspace's dev profile, whose hot numeric crates are optimised
# (see Cargo.toml); FEATURES adds `cuda` automatically on machines with an NVIDIA driver.

PROFILE  ?= quick
DEVICE   ?= auto
SEED     ?= 0
RUN      ?= runs/$(PROFILE)
FEATURES ?= $(if $(shell command -v nvidia-smi 2>/dev/null),cuda)
CARGO_FEATURES = $(if $(FEATURES),--features $(FEATURES))
CUDA_ENV = $(if $(findstring cuda,$(FEATURES)),XDG_DATA_HOME=$(CURDIR)/target/llvm-shim)
BIN      = target/debug
TOOLS    = $(BIN)/kd-pretrain $(BIN)/kd-eval $(BIN)/kd-bench $(BIN)/kd-report $(BIN)/kd-pack-labels
# Crops labelled per training image (FKD stores 500; the quick profile fits a 2-core CPU).
CROPS    ?= $(if $(filter quick,$(PROFILE)),4,100)
COMMON   = --profile $(PROFILE) --device $(DEVICE) --seed $(SEED)

# Tests run the wgpu backend on Mesa's lavapipe when no GPU is present.
export XDG_RUNTIME_DIR ?= /tmp/kdkit-runtime
export CUBECL_AUTOTUNE_LEVEL ?= minimal

.PHONY: all build test test-cuda check-cuda bench clean-runs
.DELETE_ON_ERROR:

all: $(RUN)/report.md $(RUN)/labels-stats.json
	@cat $(RUN)/report.md

build:
	@mkdir -p $(XDG_RUNTIME_DIR)
	$(if $(findstring cuda,$(FEATURES)),scripts/setup-cuda.sh)
	$(CUDA_ENV) cargo build --bins $(CARGO_FEATURES)

$(TOOLS): build

$(RUN)/teacher/model.safetensors: | build
	@mkdir -p $(RUN)
	$(BIN)/kd-pretrain $(COMMON) --role teacher --out $(RUN)/teacher > $(RUN)-teacher.json.tmp && mv $(RUN)-teacher.json.tmp $(RUN)/teacher/summary.json

$(RUN)/student/model.safetensors: | build
	@mkdir -p $(RUN)
	$(BIN)/kd-pretrain $(COMMON) --role student --out $(RUN)/student > $(RUN)-student.json.tmp && mv $(RUN)-student.json.tmp $(RUN)/student/summary.json

$(RUN)/%/eval.json: $(RUN)/%/model.safetensors | build
	$(BIN)/kd-eval $< --device $(DEVICE) --reference $(RUN)/teacher/model.safetensors \
	  --confusion-matrix $(RUN)/$*/confusion.csv > $@.tmp && mv $@.tmp $@

$(RUN)/report.md: $(RUN)/teacher/eval.json $(RUN)/student/eval.json | build
	$(BIN)/kd-report teacher=$(RUN)/teacher/eval.json student-baseline=$(RUN)/student/eval.json > $@.tmp && mv $@.tmp $@

# FKD region labels from the trained teacher (marginal smoothing top-5, u8 probabilities).
$(RUN)/labels.h5: $(RUN)/teacher/model.safetensors | build
	$(BIN)/kd-pack-labels --teacher $< --crops $(CROPS) --device $(DEVICE) --seed $(SEED) --force \
	  --out $@ > $(RUN)/labels-pack.json.tmp && mv $(RUN)/labels-pack.json.tmp $(RUN)/labels-pack.json

$(RUN)/labels-stats.json: $(RUN)/labels.h5 | build
	$(BIN)/kd-pack-labels stats $< > $@.tmp && mv $@.tmp $@

test:
	@mkdir -p $(XDG_RUNTIME_DIR)
	cargo test --workspace

# Compile-check of the CUDA backend (needs scripts/setup.sh --cuda first).
check-cuda:
	scripts/setup-cuda.sh
	XDG_DATA_HOME=$(CURDIR)/target/llvm-shim cargo check --workspace --bins --features cuda

# On a machine with an NVIDIA GPU: the unit tests on CUDA.
test-cuda:
	scripts/setup-cuda.sh
	XDG_DATA_HOME=$(CURDIR)/target/llvm-shim BURN_DEVICE=cuda cargo test --workspace --features cuda --lib

# Uses the quick teacher for the label benchmark when it exists (else a random ResNet-56).
bench: | build
	$(BIN)/kd-bench --device $(DEVICE) $(if $(wildcard runs/quick/teacher/model.safetensors),--teacher runs/quick/teacher/model.safetensors)

clean-runs:
	rm -rf runs
