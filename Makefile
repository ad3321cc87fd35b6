# kdkit pipeline. The recipes only chain tool calls; all logic lives in the tools.
#
#   make                    Fashion-MNIST: teacher, second teacher, FKD labels (labels.h5, and its
#                           hard-label conversion), then per student seed: baseline (no KD),
#                           online KD, DKD and DIST (the same teacher), FKD, FKD's online
#                           control, MEAL V2 (two teachers) and its equal-budget controls (KD,
#                           and labels alone, continued from the same baseline), SSLD
#                           (unlabeled hold-out) and its
#                           labelled-only baseline; prune, then distill: the teacher pruned in
#                           rounds, the same student distilled from the pruned teachers, and the
#                           student shaped by the sparsest one (with KD, and on labels alone);
#                           the dense teacher retrained as
#                           long as the pruned ones and its student (the equal-budget control); MoCo v2 teacher and student, SEED
#                           student. All evaluated into report.md
#                           (kd-report --run-dir: results, one verdict per seed claim, plots/*.png).
#                           Stages run JOBS at a time (2 on a CPU without CUDA), THREADS each.
#   make SEEDS="0 1 2"      the students over three seeds (report shows mean +- sd)
#   make PROFILE=converged  the same chain with every student's schedule 8x as long (40 epochs, the
#                           longest point of the students' learning curve), from teachers trained
#                           as quick's (runs/converged/)
#   make PROFILE=full       the long GPU recipe (ResNet-56 teacher, ResNet-20 student)
#   make PROFILE=imagenet-fkd DATA_DIR=... TEACHER_PTH=...
#                           a seed's own recipe on your data: imagenet-fkd, imagenet-meal-v2,
#                           imagenet-ssld, imagenet-seed, cifar100-ptd (recipes/, docs/recipes.md)
#   make DEVICE=cpu         choose the device (auto | cpu | wgpu[:N] | cuda[:N])
#   make prune-distill      only the prune-then-distill stages (prune-report.md)
#   make ssl                only the MoCo v2 / SEED stages; kNN / linear probe (ssl-report.md)
#   make readme             rewrite the generated results section of docs/results.md from report.md
#   make test               the test suite (CI runs this)
#   make lint               rustfmt and clippy, as CI checks them
#   make bench              throughput table
#   make smoke DEVICE=cuda  a short training smoke test on one device (scripts/smoke-device.sh)
#
# Binaries are built with the workspace's dev profile, whose hot numeric crates are optimised
# (see Cargo.toml) with the backends this machine can use (FEATURES, below).
#
# Every recipe that captures a tool's standard output writes it through `atomic` (below): the
# output file appears only once complete, and .DELETE_ON_ERROR removes a failed recipe's target.

PROFILE  ?= quick
# The presets sized for a CPU: quick, and converged (quick's networks and data, every student's
# schedule 8x as long; tools/src/shared/profiles.rs). The variables below take quick's values for both.
CPU_SIZED = $(filter quick converged,$(PROFILE))
# The seeds' own recipes, chains of their own on the user's data (recipes/recipes.mk).
RECIPES  = imagenet-fkd imagenet-meal-v2 imagenet-ssld imagenet-seed cifar100-ptd
DEVICE   ?= auto
SEED     ?= 0
RUN      ?= runs/$(PROFILE)
# Backends compiled into the tools: CUDA where an NVIDIA driver is, wgpu where a GPU device node
# is, Flex (the CPU) always. A machine without a GPU builds Flex alone, skipping wgpu and CubeCL.
GPU_NODES := $(wildcard /dev/dri/renderD* /dev/nvidia0)
FEATURES ?= $(if $(shell command -v nvidia-smi 2>/dev/null),cuda wgpu flex,$(if $(GPU_NODES),wgpu flex,flex))
CARGO_FEATURES = --no-default-features --features "$(FEATURES)"
# Stages run side by side, JOBS at a time with THREADS compute threads each (RAYON_NUM_THREADS,
# also the loader workers). Without CUDA, two single-threaded jobs on a 2-core CPU train more
# images per second than one job on both cores: measured on the 2-core EPYC, one student epoch
# took 12.2 s alone and two took 17.8 s side by side (1.37x), one online-KD epoch 35.6 s vs 56.8 s
# for two (1.25x). With CUDA one job at a time has the GPU. `make JOBS=1` runs one stage at a time.
NPROC   := $(shell nproc 2>/dev/null || echo 1)
JOBS    ?= $(if $(findstring cuda,$(FEATURES)),1,$(if $(filter 1,$(NPROC)),1,2))
THREADS ?= $(shell n=$$(( $(NPROC) / $(JOBS) )); [ $$n -gt 0 ] && echo $$n || echo 1)
MAKEFLAGS += -j$(JOBS)
TOOL     = RAYON_NUM_THREADS=$(THREADS) $(BIN)
CUDA_ENV = $(if $(findstring cuda,$(FEATURES)),XDG_DATA_HOME=$(CURDIR)/target/llvm-shim)
BIN      ?= target/debug
# NO_BUILD=1: use the binaries already in BIN (tests that drive the Makefile set both).
NO_BUILD ?=
TOOLS    = $(BIN)/kd-prune $(BIN)/kd-seed $(BIN)/kd-pretrain $(BIN)/kd-eval $(BIN)/kd-bench $(BIN)/kd-report $(BIN)/kd-pack-labels $(BIN)/kd-distill $(BIN)/kd-import
# Crops labelled per training image (FKD stores 500; the quick profile fits a 2-core CPU; the
# converged profile's FKD draws 40 crops per image over its 40 epochs, so it stores as many).
CROPS    ?= $(if $(filter quick,$(PROFILE)),4,$(if $(filter converged,$(PROFILE)),40,$(if $(filter imagenet-fkd,$(PROFILE)),500,100)))
# Random-resized-crop area range of the labels: the crops the teacher was trained on. FKD's
# 0.08-1 in the full profile; the quick profile trains every network on 80-100% crops without
# flips (tools/src/shared/profiles.rs, QUICK_CROP_SCALE) and labels the same family.
CROP_SCALE ?= $(if $(CPU_SIZED),0.8 1,0.08 1)
# Student seeds; the teachers and the label file use SEED.
SEEDS    ?= 0
# SSLD: training images whose labels are dropped (the unlabeled split), and the top-k per class
# kept by teacher score.
UNLABELED ?= $(if $(CPU_SIZED),25000,20000)
SELECT_PER_CLASS ?= $(if $(filter $(PROFILE),$(RECIPES)),,$(if $(CPU_SIZED),2000,1500))
# Your own data: DATASET (fashion-mnist, mnist, cifar10, cifar100, folder), DATA_DIR, and for
# image folders IMAGE_SIZE; a shorter schedule for smoke runs: EPOCHS, BATCH, QUEUE (MoCo/SEED),
# PRUNE_EPOCHS (per pruning round). Empty means the preset's value.
DATASET  ?=
DATA_DIR ?=
IMAGE_SIZE ?=
EPOCHS   ?=
BATCH    ?=
QUEUE    ?=
PRUNE_EPOCHS ?=
DATA     = $(if $(DATASET),--dataset $(DATASET)) $(if $(DATA_DIR),--data-dir $(DATA_DIR))
RUNARGS  = --profile $(PROFILE) --device $(DEVICE) $(DATA)
# Flags of the tools that train: schedule, and the image size (pretraining and distillation).
SCHEDULE = $(if $(EPOCHS),--epochs $(EPOCHS)) $(if $(BATCH),--batch-size $(BATCH))
SIZED    = $(if $(IMAGE_SIZE),--image-size $(IMAGE_SIZE))
MOCO_QUEUE = $(if $(QUEUE),--queue $(QUEUE))
COMMON   = $(RUNARGS) --seed $(SEED)
# The teachers' preset (teacher, teacher-b, the pruning ladder and its dense control, the MoCo v2
# teacher): the converged profile trains them with quick's schedules, so that its verdicts differ
# from quick's in the students' schedules alone (the question the converged profile answers: do
# the claims change once the students have converged?), and the chain is hours shorter.
TEACHER_PROFILE = $(if $(filter converged,$(PROFILE)),quick,$(PROFILE))
TEACHER_RUNARGS = --profile $(TEACHER_PROFILE) --device $(DEVICE) $(DATA)
TEACHER_COMMON = $(TEACHER_RUNARGS) --seed $(SEED)
TEACHER  = $(RUN)/teacher/model.safetensors
TEACHER_B = $(RUN)/teacher-b/model.safetensors
# Students trained per seed in SEEDS, one directory <method>-s<seed>/ each, made by a pattern
# rule: ONLINE are the kd-distill methods run online from TEACHER with their default flags (one
# rule for all, below), METHODS every such student of the main chain, SSL_METHODS those of the
# self-supervised chain. Each list is written once; everything else derives from them.
ONLINE   = kd dkd dist
METHODS  = baseline $(ONLINE) fkd fkd-online meal-v2 kd-continued baseline-continued ssld ssld-baseline
SSL_METHODS = moco-student seed
STUDENTS = $(foreach m,$(METHODS),$(foreach s,$(SEEDS),$(RUN)/$(m)-s$(s)))
comma := ,
empty :=
space := $(empty) $(empty)
# The eval.json files of a method over the seeds; `evals`: the same, comma-separated.
seed_evals = $(foreach s,$(SEEDS),$(RUN)/$(1)-s$(s)/eval.json)
evals = $(subst $(space),$(comma),$(call seed_evals,$(1)))

# $(call atomic,COMMAND,OUTPUT): COMMAND's standard output into a temporary file, renamed to
# OUTPUT once COMMAND succeeded, so that OUTPUT exists only when complete (a killed or failed
# recipe leaves the temporary file, never a partial OUTPUT). The temporary file lies in $(RUN)
# itself, named after OUTPUT's path below it ($(RUN)/kd-s0/summary.json: $(RUN)/kd-s0.summary.json.tmp):
# a tool creates its output directory only when it runs, after the shell has opened the redirect.
define atomic
mkdir -p $(RUN) && $(1) > $(RUN)/$(subst /,.,$(patsubst $(RUN)/%,%,$(2))).tmp && mv $(RUN)/$(subst /,.,$(patsubst $(RUN)/%,%,$(2))).tmp $(2)
endef

# Tests run the wgpu backend on Mesa's lavapipe when no GPU is present.
export XDG_RUNTIME_DIR ?= /tmp/kdkit-runtime
export CUBECL_AUTOTUNE_LEVEL ?= minimal

.PHONY: all prune-distill ssl readme build test lint pytorch-fixtures test-pytorch test-cuda check-cuda smoke check-wgpu bench bench-torch test-vendor clean-runs
.DELETE_ON_ERROR:
# Checkpoints made by pattern rules are results, not intermediates to delete: .PRECIOUS names
# each pattern rule's target pattern. (Not `.SECONDARY:`
# without prerequisites: that makes every target secondary, and make then skips a missing
# eval.json, e.g. of a seed added to SEEDS, when the report is newer than what exists.)
.PRECIOUS: $(foreach m,$(METHODS) $(SSL_METHODS) kd-retrained,$(RUN)/$(m)-s%/model.safetensors) \
  $(RUN)/derived-random-s%/model.safetensors

all: $(RUN)/report.md
	@cat $<

prune-distill: $(RUN)/prune-report.md
	@cat $<

build:
	@mkdir -p $(XDG_RUNTIME_DIR)
ifeq ($(NO_BUILD),)
	$(if $(findstring cuda,$(FEATURES)),scripts/setup-cuda.sh)
	$(CUDA_ENV) cargo build --bins $(CARGO_FEATURES)
endif

$(TOOLS): build

ifneq ($(filter $(PROFILE),$(RECIPES)),)
include recipes/recipes.mk
else
$(RUN)/teacher/model.safetensors: | build
	@mkdir -p $(RUN)
	$(call atomic,$(TOOL)/kd-pretrain $(TEACHER_COMMON) --role teacher $(SCHEDULE) $(SIZED) --out $(RUN)/teacher,$(RUN)/teacher/summary.json)

# A second teacher for MEAL V2's ensemble: the same recipe with another seed.
$(RUN)/teacher-b/model.safetensors: | build
	@mkdir -p $(RUN)
	$(call atomic,$(TOOL)/kd-pretrain $(TEACHER_RUNARGS) --seed $$(( $(SEED) + 1 )) --role teacher $(SCHEDULE) $(SIZED) --out $(RUN)/teacher-b,$(RUN)/teacher-b/summary.json)

# Students, one directory per method and seed: <method>-s<seed>/.
$(RUN)/baseline-s%/model.safetensors: | build
	$(call atomic,$(TOOL)/kd-pretrain $(RUNARGS) --seed $* --role student $(SCHEDULE) $(SIZED) --out $(RUN)/baseline-s$*,$(RUN)/baseline-s$*/summary.json)

# Online students of TEACHER, one rule per method in ONLINE, each with the method's default
# flags: kd (Hinton KD), dkd (decoupled KD), dist (DIST's relation loss).
define ONLINE_STUDENT
$(RUN)/$(1)-s%/model.safetensors: $(TEACHER) | build
	$(call atomic,$(TOOL)/kd-distill $(1) $(RUNARGS) --seed $$* --teacher $(TEACHER) $(SCHEDULE) $(SIZED) --out $(RUN)/$(1)-s$$*,$(RUN)/$(1)-s$$*/summary.json)
endef
$(foreach m,$(ONLINE),$(eval $(call ONLINE_STUDENT,$(m))))

$(RUN)/fkd-s%/model.safetensors: $(RUN)/labels.h5 | build
	$(call atomic,$(TOOL)/kd-distill fkd $(RUNARGS) --seed $* --labels $(RUN)/labels.h5 --reference $(TEACHER) $(SCHEDULE) $(SIZED) --out $(RUN)/fkd-s$*,$(RUN)/fkd-s$*/summary.json)

# FKD's online control: the teacher labels the same crop family on the fly, with FKD's loss
# (soft cross-entropy at T 1, no hard-label term), for as many crops as FKD's plan visits.
$(RUN)/fkd-online-s%/model.safetensors: $(TEACHER) | build
	$(call atomic,$(TOOL)/kd-distill kd $(RUNARGS) --seed $* --teacher $(TEACHER) --alpha 1 --temperature 1 $(SCHEDULE) $(SIZED) --out $(RUN)/fkd-online-s$*,$(RUN)/fkd-online-s$*/summary.json)

# MEAL V2 starts from a trained student, as its recipe does (the baseline of the same seed).
$(RUN)/meal-v2-s%/model.safetensors: $(TEACHER) $(TEACHER_B) $(RUN)/baseline-s%/model.safetensors | build
	$(call atomic,$(TOOL)/kd-distill meal-v2 $(RUNARGS) --seed $* --teacher $(TEACHER) --teacher $(TEACHER_B) --init $(RUN)/baseline-s$*/model.safetensors $(SCHEDULE) $(SIZED) --out $(RUN)/meal-v2-s$*,$(RUN)/meal-v2-s$*/summary.json)

# MEAL V2's equal-budget control: single-teacher KD continued from the same baseline, for the
# same epochs, with the same schedule and optimiser (MEAL V2's: no weight decay). MEAL V2's gain
# over it is the ensemble and the discriminator, not the extra epochs.
$(RUN)/kd-continued-s%/model.safetensors: $(TEACHER) $(RUN)/baseline-s%/model.safetensors | build
	$(call atomic,$(TOOL)/kd-distill kd $(RUNARGS) --seed $* --teacher $(TEACHER) --init $(RUN)/baseline-s$*/model.safetensors --weight-decay 0 $(SCHEDULE) $(SIZED) --out $(RUN)/kd-continued-s$*,$(RUN)/kd-continued-s$*/summary.json)

# And the baseline itself trained on for the same epochs, on labels alone (same optimiser):
# what the extra epochs give without any teacher.
$(RUN)/baseline-continued-s%/model.safetensors: $(RUN)/baseline-s%/model.safetensors | build
	$(call atomic,$(TOOL)/kd-pretrain $(RUNARGS) --seed $* --role student --init $(RUN)/baseline-s$*/model.safetensors --weight-decay 0 $(SCHEDULE) $(SIZED) --out $(RUN)/baseline-continued-s$*,$(RUN)/baseline-continued-s$*/summary.json)

$(RUN)/ssld-s%/model.safetensors: $(TEACHER) | build
	$(call atomic,$(TOOL)/kd-distill ssld $(RUNARGS) --seed $* --teacher $(TEACHER) --unlabeled train-holdout:$(UNLABELED) --select-per-class $(SELECT_PER_CLASS) $(SCHEDULE) $(SIZED) --out $(RUN)/ssld-s$*,$(RUN)/ssld-s$*/summary.json)

# SSLD's labelled-only baseline: the student trained on the same labelled images as SSLD (the
# training split minus SSLD's unlabelled hold-out, the same seeded choice).
$(RUN)/ssld-baseline-s%/model.safetensors: | build
	$(call atomic,$(TOOL)/kd-pretrain $(RUNARGS) --seed $* --role student --unlabeled-holdout $(UNLABELED) $(SCHEDULE) $(SIZED) --out $(RUN)/ssld-baseline-s$*,$(RUN)/ssld-baseline-s$*/summary.json)

# Every classifier is measured against the teacher, so its evaluation waits for it.
$(RUN)/%/eval.json: $(RUN)/%/model.safetensors $(TEACHER) | build
	$(call atomic,$(TOOL)/kd-eval $< --device $(DEVICE) --reference $(TEACHER) --confusion-matrix $(RUN)/$*/confusion.csv,$@)


# FKD region labels from the trained teacher (marginal smoothing top-5, u8 probabilities).
$(RUN)/labels.h5: $(RUN)/teacher/model.safetensors | build
	$(call atomic,$(TOOL)/kd-pack-labels --teacher $< --crops $(CROPS) --scale $(CROP_SCALE) --device $(DEVICE) $(DATA) --seed $(SEED) --force --out $@,$(RUN)/labels-pack.json)

$(RUN)/labels-stats.json: $(RUN)/labels.h5 | build
	$(call atomic,$(TOOL)/kd-pack-labels stats $<,$@)

# FKD's label compressions (Shen & Xing, ECCV 2022, §3.2) at equal crops: labels.h5 (marginal
# smoothing, top-5, u8) re-compressed without the teacher (`kd-pack-labels convert`), one FKD
# student each at SEED: labels-hard.h5 (arg-max only); LABEL_TYPES="hard smoothing" adds
# labels-smoothing.h5 (top-1 probability; within 0.13 points of hard at seed 0 in the quick
# profile, so the default leaves it out to keep `make` inside its time budget).
LABEL_TYPES ?= hard
define FKD_LABEL_TYPE
$(RUN)/labels-$(1).h5: $(RUN)/labels.h5 | build
	$(call atomic,$(TOOL)/kd-pack-labels convert $(RUN)/labels.h5 --label-type $(1) --force --out $(RUN)/labels-$(1).h5,$(RUN)/labels-$(1).json)

$(RUN)/fkd-$(1)-s$(SEED)/model.safetensors: $(RUN)/labels-$(1).h5 | build
	$(call atomic,$(TOOL)/kd-distill fkd $(RUNARGS) --seed $(SEED) --labels $(RUN)/labels-$(1).h5 --reference $(TEACHER) $(SCHEDULE) $(SIZED) --out $(RUN)/fkd-$(1)-s$(SEED),$(RUN)/fkd-$(1)-s$(SEED)/summary.json)
endef
$(foreach t,$(LABEL_TYPES),$(eval $(call FKD_LABEL_TYPE,$(t))))
FKD_TYPE_EVALS = $(foreach t,$(LABEL_TYPES),$(RUN)/fkd-$(t)-s$(SEED)/eval.json)

# Prune, then distill (Park & No, ECCV 2022). One kd-prune run to PRUNE_TARGET sparsity keeps a
# checkpoint per round, named by the remaining fraction (1 - PRUNE_FRACTION)^n. Full profile:
# prune-then-distill's rounds of 20%, whose 0.640, 0.410 and 0.210 are its st36, st59 and st79.
# Quick profile: 3 rounds of 40% (each with one epoch of retraining; converged: the same) reach st79's
# sparsity in less than half the time of 7 rounds; students learn from the 64% and 78% sparse
# teachers.
PRUNE_TARGET ?= 0.79
PRUNE_FRACTION ?= $(if $(CPU_SIZED),0.4,0.2)
PRUNED   ?= $(if $(CPU_SIZED),0.360 0.216,0.640 0.410 0.210)
SPARSEST = $(lastword $(PRUNED))
PRUNED_CKPT = $(RUN)/prune/model-remaining-$(1).safetensors

$(RUN)/prune/ladder.csv: $(TEACHER) | build
	$(call atomic,$(TOOL)/kd-prune $(TEACHER_COMMON) --teacher $(TEACHER) --target-sparsity $(PRUNE_TARGET) --fraction $(PRUNE_FRACTION) $(if $(PRUNE_EPOCHS),--epochs $(PRUNE_EPOCHS)) $(if $(BATCH),--batch-size $(BATCH)) --out $(RUN)/prune,$(RUN)/prune/summary.json)

$(foreach r,$(PRUNED),$(call PRUNED_CKPT,$(r))): $(RUN)/prune/ladder.csv

# Pruned teachers are evaluated like the others, under names of their own.
$(RUN)/pruned-%/eval.json: $(RUN)/prune/ladder.csv | build
	@mkdir -p $(RUN)/pruned-$*
	$(call atomic,$(TOOL)/kd-eval $(call PRUNED_CKPT,$*) --device $(DEVICE) --reference $(TEACHER),$@)

# The preset's student distilled (online KD) from each pruned teacher: kd-pruned<remaining>-s<seed>.
define KD_FROM_PRUNED
$(RUN)/kd-pruned$(1)-s$(2)/model.safetensors: $(call PRUNED_CKPT,$(1)) | build
	$(call atomic,$(TOOL)/kd-distill kd $(RUNARGS) --seed $(2) --teacher $(call PRUNED_CKPT,$(1)) $(SCHEDULE) $(SIZED) --out $(RUN)/kd-pruned$(1)-s$(2),$(RUN)/kd-pruned$(1)-s$(2)/summary.json)
endef
$(foreach r,$(PRUNED),$(foreach s,$(SEEDS),$(eval $(call KD_FROM_PRUNED,$(r),$(s)))))

# prune-then-distill's equal-budget control: the dense teacher retrained, without pruning, for
# as many rounds as the sparsest pruned teacher had, with the same retraining each round
# (`kd-prune --fraction 0`), and the student distilled from it: kd-retrained-s<seed>. The
# pruned teachers' gain over it is the pruning, not the extra epochs.
# The rounds that reached the sparsest teacher: log(remaining) / log(1 - fraction), rounded
# (quick 0.216 = 0.6^3: 3; full 0.210 ~ 0.8^7: 7).
PRUNE_ROUNDS ?= $(shell awk 'BEGIN { printf "%d", log($(SPARSEST)) / log(1 - $(PRUNE_FRACTION)) + 0.5 }')
RETRAINED = $(RUN)/prune-dense/model-remaining-1.000-round-$(PRUNE_ROUNDS).safetensors
$(RUN)/prune-dense/ladder.csv: $(TEACHER) | build
	$(call atomic,$(TOOL)/kd-prune $(TEACHER_COMMON) --teacher $(TEACHER) --rounds $(PRUNE_ROUNDS) --fraction 0 $(if $(PRUNE_EPOCHS),--epochs $(PRUNE_EPOCHS)) $(if $(BATCH),--batch-size $(BATCH)) --out $(RUN)/prune-dense,$(RUN)/prune-dense/summary.json)

$(RETRAINED): $(RUN)/prune-dense/ladder.csv

$(RUN)/teacher-retrained/eval.json: $(RUN)/prune-dense/ladder.csv | build
	@mkdir -p $(RUN)/teacher-retrained
	$(call atomic,$(TOOL)/kd-eval $(RETRAINED) --device $(DEVICE) --reference $(TEACHER),$@)

$(RUN)/kd-retrained-s%/model.safetensors: $(RETRAINED) | build
	$(call atomic,$(TOOL)/kd-distill kd $(RUNARGS) --seed $* --teacher $(RETRAINED) $(SCHEDULE) $(SIZED) --out $(RUN)/kd-retrained-s$*,$(RUN)/kd-retrained-s$*/summary.json)

# The dense student shaped by the sparsest teacher (its remaining channels), initialised at
# random as prune-then-distill's students are, then distilled from it. (`kd-prune derive-student
# --init strongest-filters` starts it from the teacher's strongest filters instead; `make
# DERIVED="random strongest"` runs both.) One per seed in SEEDS, so that the claim gets a test:
# each seed its own random initialisation (derived-random/ for SEED, derived-random-s<seed>/ for
# the others); the strongest filters are the teacher's and the same for every seed.
DERIVED ?= random
DERIVED_INIT = $(RUN)/derived-$(1)$(if $(filter strongest,$(1))$(filter $(2),$(SEED)),,-s$(2))/model.safetensors
$(RUN)/derived-random/model.safetensors: $(call PRUNED_CKPT,$(SPARSEST)) | build
	$(call atomic,$(TOOL)/kd-prune derive-student --checkpoint $< --init random --seed $(SEED) --out $(RUN)/derived-random,$(RUN)/derived-random/shape.json)

$(RUN)/derived-random-s%/model.safetensors: $(call PRUNED_CKPT,$(SPARSEST)) | build
	$(call atomic,$(TOOL)/kd-prune derive-student --checkpoint $< --init random --seed $* --out $(RUN)/derived-random-s$*,$(RUN)/derived-random-s$*/shape.json)

$(RUN)/derived-strongest/model.safetensors: $(call PRUNED_CKPT,$(SPARSEST)) | build
	$(call atomic,$(TOOL)/kd-prune derive-student --checkpoint $< --init strongest-filters --out $(RUN)/derived-strongest,$(RUN)/derived-strongest/shape.json)

# $(call DERIVED_STUDENTS,init,seed): the derived network distilled from the sparsest teacher,
# and its control, the same network trained on labels alone, without KD.
define DERIVED_STUDENTS
$(RUN)/kd-derived-$(1)-s$(2)/model.safetensors: $(call DERIVED_INIT,$(1),$(2)) | build
	$$(call atomic,$(TOOL)/kd-distill kd $(RUNARGS) --seed $(2) --teacher $(call PRUNED_CKPT,$(SPARSEST)) --init $$< $(SCHEDULE) $(SIZED) --out $(RUN)/kd-derived-$(1)-s$(2),$(RUN)/kd-derived-$(1)-s$(2)/summary.json)

$(RUN)/derived-baseline-$(1)-s$(2)/model.safetensors: $(call DERIVED_INIT,$(1),$(2)) | build
	$$(call atomic,$(TOOL)/kd-pretrain $(RUNARGS) --seed $(2) --role student --init $$< $(SCHEDULE) $(SIZED) --out $(RUN)/derived-baseline-$(1)-s$(2),$(RUN)/derived-baseline-$(1)-s$(2)/summary.json)
endef
$(foreach d,$(DERIVED),$(foreach s,$(SEEDS),$(eval $(call DERIVED_STUDENTS,$(d),$(s)))))

PTD_ROWS = teacher=$(RUN)/teacher/eval.json $(foreach r,$(PRUNED),pruned-$(r)=$(RUN)/pruned-$(r)/eval.json) \
  baseline=$(call evals,baseline) kd-unpruned=$(call evals,kd) teacher-retrained=$(RUN)/teacher-retrained/eval.json \
  kd-retrained=$(call evals,kd-retrained) \
  $(foreach r,$(PRUNED),kd-pruned$(r)=$(call evals,kd-pruned$(r))) \
  $(foreach d,$(DERIVED),kd-derived-$(d)=$(call evals,kd-derived-$(d)) derived-baseline-$(d)=$(call evals,derived-baseline-$(d)))
PTD_EVALS = $(RUN)/teacher/eval.json $(foreach r,$(PRUNED),$(RUN)/pruned-$(r)/eval.json) $(RUN)/teacher-retrained/eval.json \
  $(foreach m,baseline kd kd-retrained $(foreach r,$(PRUNED),kd-pruned$(r)),$(call seed_evals,$(m))) \
  $(foreach d,$(DERIVED),$(call seed_evals,kd-derived-$(d)) $(call seed_evals,derived-baseline-$(d)))

$(RUN)/prune-report.md: $(PTD_EVALS) | build
	$(call atomic,$(TOOL)/kd-report $(PTD_ROWS),$@)

# Self-supervised distillation (`make ssl`): a MoCo v2 teacher (the preset's teacher network), a
# MoCo v2 student and a SEED student (the preset's student network, one per seed in SEEDS), each
# evaluated frozen by kNN and the linear probe into ssl-report.md.
$(RUN)/moco-teacher/model.safetensors: | build
	@mkdir -p $(RUN)
	$(call atomic,$(TOOL)/kd-pretrain --method moco --role teacher $(TEACHER_COMMON) $(SCHEDULE) $(SIZED) $(MOCO_QUEUE) --out $(RUN)/moco-teacher,$(RUN)/moco-teacher/summary.json)

$(RUN)/moco-student-s%/model.safetensors: | build
	@mkdir -p $(RUN)
	$(call atomic,$(TOOL)/kd-pretrain --method moco --role student $(RUNARGS) --seed $* $(SCHEDULE) $(SIZED) $(MOCO_QUEUE) --out $(RUN)/moco-student-s$*,$(RUN)/moco-student-s$*/summary.json)

$(RUN)/seed-s%/model.safetensors: $(RUN)/moco-teacher/model.safetensors | build
	$(call atomic,$(TOOL)/kd-seed --teacher $< $(RUNARGS) --seed $* $(SCHEDULE) $(MOCO_QUEUE) --out $(RUN)/seed-s$*,$(RUN)/seed-s$*/summary.json)

# Encoders: kNN top-1 and the linear probe (kd-eval's default for a network without a classifier).
$(RUN)/moco-%/eval.json: $(RUN)/moco-%/model.safetensors | build
	$(call atomic,$(TOOL)/kd-eval $< --device $(DEVICE),$@)

$(RUN)/seed-s%/eval.json: $(RUN)/seed-s%/model.safetensors | build
	$(call atomic,$(TOOL)/kd-eval $< --device $(DEVICE),$@)

SSL_EVALS = $(RUN)/moco-teacher/eval.json $(foreach s,$(SEEDS),$(foreach m,$(SSL_METHODS),$(RUN)/$(m)-s$(s)/eval.json))
$(RUN)/ssl-report.md: $(SSL_EVALS) | build
	$(call atomic,$(TOOL)/kd-report moco-teacher=$(RUN)/moco-teacher/eval.json moco-student=$(call evals,moco-student) seed-student=$(call evals,seed),$@)

ssl: $(RUN)/ssl-report.md
	@cat $<

# The report of every stage: results table, verdicts, plots (kd-report writes report.md and
# plots/ atomically itself).
# Prerequisites listed with the longest chains first (pruning -> derived student -> its KD; MoCo
# teacher -> SEED). This starts their first stage at once; a later stage whose prerequisite is
# still running is skipped and started only when make's walk over this list comes back to it
# (measured: pruning began 16 minutes into a 29-minute chain, the derived student's KD ran last).
$(RUN)/report.md: $(foreach d,$(DERIVED),$(call seed_evals,kd-derived-$(d))) $(call seed_evals,kd-retrained) \
  $(call seed_evals,seed) $(RUN)/teacher-b/eval.json $(call seed_evals,meal-v2) $(call seed_evals,kd-continued) \
  $(PTD_EVALS) $(SSL_EVALS) $(RUN)/teacher/eval.json $(addsuffix /eval.json,$(STUDENTS)) $(FKD_TYPE_EVALS) $(RUN)/labels-stats.json | build
	$(TOOL)/kd-report --run-dir $(RUN) > /dev/null

# The generated results section of docs/results.md (between its kd-report markers), from
# report.md's run.
readme: $(RUN)/report.md
	$(TOOL)/kd-report --run-dir $(RUN) --readme docs/results.md > /dev/null

endif

# The whole suite, then the tests that need root (a tmpfs mount for the disk-full test): a
# plain `cargo test` reports those as ignored.
test:
	@mkdir -p $(XDG_RUNTIME_DIR)
	cargo test --workspace
	cargo test --workspace --test e2e -- --ignored disk_full
	$(MAKE) test-vendor

# The patched crates' own unit tests, ours among them (they are outside the workspace), and that
# each vendor/<crate> is exactly its crates.io release + patches/<crate>.
test-vendor:
	scripts/patch-vendor.sh check
	cargo test --locked --manifest-path vendor/burn-flex/Cargo.toml --target-dir target/burn-flex-tests --lib
	cargo test --locked --manifest-path vendor/rayon-core/Cargo.toml --target-dir target/rayon-core-tests --lib

# Formatting and lints, as CI checks them.
lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

# Regenerate the import fixtures (the CIFAR ResNets and the torchvision/timm families) with
# Debian's PyTorch, installed when missing.
pytorch-fixtures:
	scripts/setup-torch.sh
	python=$${PYTHON:-$$(scripts/setup-torch.sh --print-python)} && \
	  (cd tests/fixtures/import && $$python make_fixtures.py) && \
	  $$python tests/fixtures/zoo/make_zoo_fixtures.py

# With PyTorch installed: a pruned kdkit checkpoint loads into the dense PyTorch model
# (strict=True) and gives kd-eval's predictions; every torchvision/timm family at full width
# (1000 classes, 224 px, random weights) imports with PyTorch's logits and its kdkit checkpoint
# loads back into torchvision (strict=True). PYTHON names an interpreter that has torch.
test-pytorch:
	@mkdir -p $(XDG_RUNTIME_DIR)
	scripts/setup-torch.sh
	export PYTHON=$${PYTHON:-$$(scripts/setup-torch.sh --print-python)} && \
	  cargo test --workspace --test e2e pytorch -- --ignored && \
	  cargo test -p kd-tools --lib pytorch -- --ignored --nocapture

# Compile-check of a build without the CPU backend, CUDA alone (needs scripts/setup.sh --cuda
# first): no tool depends on Flex being compiled in. CI runs it.
check-cuda:
	scripts/setup-cuda.sh
	XDG_DATA_HOME=$(CURDIR)/target/llvm-shim cargo check -p kd-tools --bins --no-default-features --features cuda

# The same with wgpu alone (it differs from the CUDA-only build in common/src/device.rs only).
check-wgpu:
	cargo check -p kd-tools --bins --no-default-features --features wgpu

# On a machine with an NVIDIA GPU: the unit tests on CUDA.
test-cuda:
	scripts/setup-cuda.sh
	XDG_DATA_HOME=$(CURDIR)/target/llvm-shim BURN_DEVICE=cuda cargo test --workspace --features cuda --lib

# A short training chain on one device, checked against thresholds and the CPU's evaluation.
smoke: | build
	BIN=$(BIN) $(if $(DATA_DIR),DATA_DIR=$(DATA_DIR)) scripts/smoke-device.sh $(DEVICE)

# Uses the quick teacher for the label benchmark when it exists (else a random ResNet-56).
bench: | build
	$(BIN)/kd-bench --device $(DEVICE) $(if $(wildcard runs/quick/teacher/model.safetensors),--teacher runs/quick/teacher/model.safetensors)

# kdkit vs PyTorch eager vs kdkit on the unpatched burn-flex, side by side (THREADS=2 by default;
# installs Debian's python3-torch when no Python here imports torch).
bench-torch:
	scripts/bench-torch.sh

clean-runs:
	rm -rf runs
