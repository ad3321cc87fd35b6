# The seeds' own recipes (`make PROFILE=<recipe>`), included by the Makefile. Each one is a chain
# of the same tools with the paper's settings (the TOML files next to this one, given as
# --config; flags override them) on the user's data: nothing downloads. docs/recipes.md gives
# every paper's setting, its published number and the command.
#
#   imagenet-fkd      FKD labels from an imported teacher, a student trained on them
#   imagenet-meal-v2  two imported teachers, a student initialised from a pretrained checkpoint
#   imagenet-ssld     SSLD with a folder of unlabelled images, then fine-tuned on the labels
#   imagenet-seed     an imported MoCo v2 ResNet-50 teaching SEED students, kNN and linear probe
#   cifar100-ptd      prune-then-distill on CIFAR-100: the teacher, its pruning ladder, students
#
# Variables: DATA_DIR (an ImageNet-layout folder or file lists; CIFAR-100's binary folder for
# cifar100-ptd), TEACHER_PTH / TEACHER_ARCH (and TEACHER_B_PTH / TEACHER_B_ARCH, STUDENT_PTH,
# UNLABELED_DIR where a recipe needs them), STUDENT_ARCH (STUDENT_ARCHS for SEED), CLASSES,
# IMAGE_SIZE; WIDTH (a width multiplier for every network: smoke runs), EPOCHS, BATCH,
# PRUNE_EPOCHS, CROPS, NUM_CROPS, QUEUE, SELECT_PER_CLASS, VAL_SIZE for shorter runs.

RECIPE_CONFIG = recipes/$(PROFILE).toml
# Checkpoints made by pattern rules are results, not intermediates for make to delete.
.PRECIOUS: $(RUN)/seed-%/model.safetensors $(RUN)/kd-pruned%/model.safetensors $(RUN)/%/eval.json
WIDTH_FLAG = $(if $(WIDTH),--width $(WIDTH))
RECIPE_SIZE = --image-size $(or $(IMAGE_SIZE),224)
CLASSES ?= $(if $(filter cifar100-ptd,$(PROFILE)),100,1000)
# Data and device flags of every tool that reads images.
ON_DATA = $(if $(filter cifar100-ptd,$(PROFILE)),--dataset cifar100,--dataset folder) \
  $(if $(DATA_DIR),--data-dir $(DATA_DIR)) --device $(DEVICE) --seed $(SEED)
required = $(if $($(1)),,$(error PROFILE=$(PROFILE) needs $(1)=...: $(2)))

# kd-import of a torchvision/timm/MoCo state dict: $(call import,PTH,ARCH,OUT,EXTRA FLAGS).
define import
$(call atomic,$(TOOL)/kd-import $(1) --arch $(2) $(WIDTH_FLAG) --classes $(CLASSES) $(RECIPE_SIZE) --dataset folder $(4) --out $(3),$(3)/summary.json)
endef

$(RUN)/%/eval.json: $(RUN)/%/model.safetensors | build
	$(call atomic,$(TOOL)/kd-eval $< --device $(DEVICE) $(if $(DATA_DIR),--data-dir $(DATA_DIR)),$@)

ifeq ($(PROFILE),imagenet-fkd)
# FKD (Shen & Xing, ECCV 2022): 500 region crops per image labelled once by the teacher
# (marginal smoothing, top-5), then the student on 4 of them per image visit, no teacher.
$(call required,DATA_DIR,the ImageNet folder (train/ and val/))
$(call required,TEACHER_PTH,the teacher's torchvision or timm .pth)
TEACHER_ARCH ?= resnet50
STUDENT_ARCH ?= resnet50
NUM_CROPS ?= 4
$(RUN)/teacher/model.safetensors: | build
	$(call import,$(TEACHER_PTH),$(TEACHER_ARCH),$(RUN)/teacher)

# The teacher is order-only: a label file packed elsewhere (array jobs, merged) and placed here
# is kept; kd-pack-labels itself refuses a file packed with other settings.
$(RUN)/labels.h5: | $(RUN)/teacher/model.safetensors build
	$(call atomic,$(TOOL)/kd-pack-labels --teacher $(RUN)/teacher/model.safetensors --crops $(CROPS) --scale 0.08 1 $(ON_DATA) --out $@,$(RUN)/labels-pack.json)

$(RUN)/fkd/model.safetensors: $(RUN)/labels.h5 | build
	$(call atomic,$(TOOL)/kd-distill fkd --labels $< --arch $(STUDENT_ARCH) $(WIDTH_FLAG) --num-crops $(NUM_CROPS) --config $(RECIPE_CONFIG) $(ON_DATA) $(RECIPE_SIZE) $(SCHEDULE) --out $(RUN)/fkd,$(RUN)/fkd/summary.json)

$(RUN)/report.md: $(RUN)/teacher/eval.json $(RUN)/fkd/eval.json | build
	$(call atomic,$(TOOL)/kd-report teacher=$(RUN)/teacher/eval.json fkd-student=$(RUN)/fkd/eval.json,$@)
endif

ifeq ($(PROFILE),imagenet-meal-v2)
# MEAL V2 (Shen & Savvides, 2020): the student, initialised from its pretrained checkpoint,
# learns the average of two teachers' softmax with a discriminator, no hard labels.
$(call required,DATA_DIR,the ImageNet folder (train/ and val/))
$(call required,TEACHER_PTH,the first teacher's .pth)
$(call required,TEACHER_B_PTH,the second teacher's .pth)
$(call required,STUDENT_PTH,the student's pretrained .pth)
TEACHER_ARCH ?= resnet152
TEACHER_B_ARCH ?= resnet101
STUDENT_ARCH ?= resnet50
$(RUN)/teacher/model.safetensors: | build
	$(call import,$(TEACHER_PTH),$(TEACHER_ARCH),$(RUN)/teacher)

$(RUN)/teacher-b/model.safetensors: | build
	$(call import,$(TEACHER_B_PTH),$(TEACHER_B_ARCH),$(RUN)/teacher-b)

$(RUN)/student-init/model.safetensors: | build
	$(call import,$(STUDENT_PTH),$(STUDENT_ARCH),$(RUN)/student-init)

$(RUN)/meal-v2/model.safetensors: $(RUN)/teacher/model.safetensors $(RUN)/teacher-b/model.safetensors $(RUN)/student-init/model.safetensors | build
	$(call atomic,$(TOOL)/kd-distill meal-v2 --teacher $(RUN)/teacher/model.safetensors --teacher $(RUN)/teacher-b/model.safetensors --init $(RUN)/student-init/model.safetensors --config $(RECIPE_CONFIG) $(ON_DATA) $(RECIPE_SIZE) $(SCHEDULE) --out $(RUN)/meal-v2,$(RUN)/meal-v2/summary.json)

$(RUN)/report.md: $(foreach s,teacher teacher-b student-init meal-v2,$(RUN)/$(s)/eval.json) | build
	$(call atomic,$(TOOL)/kd-report $(foreach s,teacher teacher-b student-init meal-v2,$(s)=$(RUN)/$(s)/eval.json),$@)
endif

ifeq ($(PROFILE),imagenet-ssld)
# SSLD (Cui et al., 2021): the student learns the teacher's predictions (symmetric KL, no labels)
# on the labelled images and the unlabelled ones the teacher ranks highest per class, then is
# fine-tuned on the labelled set.
$(call required,DATA_DIR,the ImageNet folder (train/ and val/))
$(call required,TEACHER_PTH,the teacher's .pth)
$(call required,UNLABELED_DIR,a folder of unlabelled images)
TEACHER_ARCH ?= resnet50d
STUDENT_ARCH ?= mobilenet-v3-large
$(RUN)/teacher/model.safetensors: | build
	$(call import,$(TEACHER_PTH),$(TEACHER_ARCH),$(RUN)/teacher)

$(RUN)/ssld/model.safetensors: $(RUN)/teacher/model.safetensors | build
	$(call atomic,$(TOOL)/kd-distill ssld --teacher $< --unlabeled folder:$(UNLABELED_DIR) $(if $(SELECT_PER_CLASS),--select-per-class $(SELECT_PER_CLASS)) --finetune-epochs $(or $(FINETUNE_EPOCHS),30) --finetune-lr-scale 0.01 --arch $(STUDENT_ARCH) $(WIDTH_FLAG) --config $(RECIPE_CONFIG) $(ON_DATA) $(RECIPE_SIZE) $(SCHEDULE) --out $(RUN)/ssld,$(RUN)/ssld/summary.json)

$(RUN)/report.md: $(RUN)/teacher/eval.json $(RUN)/ssld/eval.json | build
	$(call atomic,$(TOOL)/kd-report teacher=$(RUN)/teacher/eval.json ssld-student=$(RUN)/ssld/eval.json,$@)
endif

ifeq ($(PROFILE),imagenet-seed)
# SEED (Fang et al., ICLR 2021): a frozen MoCo v2 teacher's similarity distribution over a queue
# of its embeddings taught to each student; encoders judged by kNN and a linear probe.
$(call required,DATA_DIR,the ImageNet folder (train/ and val/))
$(call required,TEACHER_PTH,the MoCo v2 checkpoint (module.encoder_q.*))
TEACHER_ARCH ?= resnet50
STUDENT_ARCHS ?= resnet18 efficientnet-b0
$(RUN)/teacher/model.safetensors: | build
	$(call import,$(TEACHER_PTH),$(TEACHER_ARCH),$(RUN)/teacher,--head projection --layout moco)

$(RUN)/seed-%/model.safetensors: $(RUN)/teacher/model.safetensors | build
	$(call atomic,$(TOOL)/kd-seed --teacher $< --arch $* $(WIDTH_FLAG) $(if $(QUEUE),--queue $(QUEUE)) --config $(RECIPE_CONFIG) $(ON_DATA) $(SCHEDULE) --out $(RUN)/seed-$*,$(RUN)/seed-$*/summary.json)

$(RUN)/report.md: $(RUN)/teacher/eval.json $(foreach s,$(STUDENT_ARCHS),$(RUN)/seed-$(s)/eval.json) | build
	$(call atomic,$(TOOL)/kd-report moco-teacher=$(RUN)/teacher/eval.json $(foreach s,$(STUDENT_ARCHS),seed-$(s)=$(RUN)/seed-$(s)/eval.json),$@)
endif

ifeq ($(PROFILE),cifar100-ptd)
# Prune, then distill (Park & No, ECCV 2022) on CIFAR-100: the teacher trained, pruned in rounds
# of 20% of the remaining weights (global L1, retrained with the schedule restarted after each)
# to 79% sparsity; the student distilled (alpha 0.95, T 10) from the teacher at 0, 36, 59 and
# 79% sparsity, and the student shaped by the 79% teacher.
TEACHER_ARCH ?= vgg19
STUDENT_ARCH ?= vgg11
STEM_FLAG = $(if $(filter resnet%,$(TEACHER_ARCH)),--stem cifar)
VAL_SIZE ?= 5000
PTD_PRUNED ?= 0.640 0.410 0.210
PTD_TEACHER = $(RUN)/teacher/model.safetensors
PTD_KD = --alpha 0.95 --temperature 10 --config recipes/cifar100-ptd-kd.toml $(ON_DATA) --val-size $(VAL_SIZE) $(SCHEDULE)
$(PTD_TEACHER): | build
	@mkdir -p $(RUN)
	$(call atomic,$(TOOL)/kd-pretrain --arch $(TEACHER_ARCH) $(STEM_FLAG) $(WIDTH_FLAG) --config recipes/cifar100-ptd-teacher.toml $(ON_DATA) --val-size $(VAL_SIZE) $(SCHEDULE) --out $(RUN)/teacher,$(RUN)/teacher/summary.json)

$(RUN)/prune/ladder.csv: $(PTD_TEACHER) | build
	$(call atomic,$(TOOL)/kd-prune --teacher $< --target-sparsity 0.79 --fraction 0.2 --config recipes/cifar100-ptd-prune.toml $(ON_DATA) --val-size $(VAL_SIZE) $(if $(PRUNE_EPOCHS),--epochs $(PRUNE_EPOCHS)) $(if $(BATCH),--batch-size $(BATCH)) --out $(RUN)/prune,$(RUN)/prune/summary.json)

$(foreach r,$(PTD_PRUNED),$(RUN)/prune/model-remaining-$(r).safetensors): $(RUN)/prune/ladder.csv

# The pruned teachers, evaluated under names of their own.
$(RUN)/pruned-%/eval.json: $(RUN)/prune/model-remaining-%.safetensors | build
	@mkdir -p $(RUN)/pruned-$*
	$(call atomic,$(TOOL)/kd-eval $< --device $(DEVICE) $(if $(DATA_DIR),--data-dir $(DATA_DIR)),$@)

$(RUN)/kd-unpruned/model.safetensors: $(PTD_TEACHER) | build
	$(call atomic,$(TOOL)/kd-distill kd --teacher $< --arch $(STUDENT_ARCH) $(WIDTH_FLAG) $(PTD_KD) --out $(RUN)/kd-unpruned,$(RUN)/kd-unpruned/summary.json)

$(RUN)/kd-pruned%/model.safetensors: $(RUN)/prune/model-remaining-%.safetensors | build
	$(call atomic,$(TOOL)/kd-distill kd --teacher $< --arch $(STUDENT_ARCH) $(WIDTH_FLAG) $(PTD_KD) --out $(RUN)/kd-pruned$*,$(RUN)/kd-pruned$*/summary.json)

PTD_SPARSEST = $(RUN)/prune/model-remaining-$(lastword $(PTD_PRUNED)).safetensors
$(RUN)/derived/model.safetensors: $(PTD_SPARSEST) | build
	$(call atomic,$(TOOL)/kd-prune derive-student --checkpoint $< --init random --seed $(SEED) --out $(RUN)/derived,$(RUN)/derived/shape.json)

$(RUN)/kd-derived/model.safetensors: $(RUN)/derived/model.safetensors | build
	$(call atomic,$(TOOL)/kd-distill kd --teacher $(PTD_SPARSEST) --init $< $(PTD_KD) --out $(RUN)/kd-derived,$(RUN)/kd-derived/summary.json)

PTD_ROWS = teacher $(foreach r,$(PTD_PRUNED),pruned-$(r)) kd-unpruned $(foreach r,$(PTD_PRUNED),kd-pruned$(r)) kd-derived
$(RUN)/report.md: $(foreach r,$(PTD_ROWS),$(RUN)/$(r)/eval.json) | build
	$(call atomic,$(TOOL)/kd-report $(foreach r,$(PTD_ROWS),$(r)=$(RUN)/$(r)/eval.json),$@)
endif
