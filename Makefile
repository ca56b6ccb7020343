# Every target creates .venv on first use and reinstalls when pyproject.toml changes.
#   make check                      lint + the tests that start no process (the inner loop, under 90 s)
#   make test                       lint + the documentation build + the default offline test suite
#   make docs                       the documentation site (mkdocs build --strict) into ./site
#   make dataset K=3                D_SKILL-MIX(3) into ./out (embedded local model unless a key/URL is set)
#   make dataset K=1,2,3 N=100 TEACHER_MODEL=gpt-4o OUT=out/d123     (OPENAI_API_KEY in the environment)
#   make train RECIPE=training/recipes/tiny/smoke.yaml [DATA=out] [OUT=dir]   fine-tune a student (TRL SFT)
#   make eval MODEL=./ckpt JUDGE_MODEL=gpt-4o K=2,3,4,5 SETTING=held-out EVAL_DATA=out OUT=eval/ckpt   Skill-Mix(k)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
EMBEDDED_STAMP := $(VENV)/.installed-embedded

K ?= 3
N ?=
OUT ?= out
PRESET ?= smoke
TEACHER_MODEL ?=
TEACHER_BASE_URL ?=
JUDGE_MODEL ?=
JUDGE_BASE_URL ?=
TARGET_ACCEPTED ?=
MAX_USD ?=
REPO ?=
VERSION ?=
DATA ?= out
PRIVATE ?=
FORCE ?=
RECIPE ?=
MODEL ?=
MODEL_BASE_URL ?=
SETTING ?=
EVAL_SET ?=
EVAL_DATA ?=
CONFIG ?=

DATASET_FLAGS = $(strip $(if $(N),--n $(N)) $(if $(TEACHER_MODEL),--teacher-model $(TEACHER_MODEL)) \
  $(if $(TEACHER_BASE_URL),--teacher-base-url $(TEACHER_BASE_URL)) $(if $(JUDGE_MODEL),--judge-model $(JUDGE_MODEL)) \
  $(if $(JUDGE_BASE_URL),--judge-base-url $(JUDGE_BASE_URL)) \
  $(if $(TARGET_ACCEPTED),--target-accepted $(TARGET_ACCEPTED)) $(if $(MAX_USD),--max-usd $(MAX_USD)))

EVAL_FLAGS = $(strip $(if $(MODEL),--student-model $(MODEL)) $(if $(MODEL_BASE_URL),--student-base-url $(MODEL_BASE_URL)) \
  $(if $(JUDGE_MODEL),--judge-model $(JUDGE_MODEL)) $(if $(JUDGE_BASE_URL),--judge-base-url $(JUDGE_BASE_URL)) \
  $(if $(SETTING),--setting $(SETTING)) $(if $(N),--n $(N)) $(if $(EVAL_SET),--eval-set $(EVAL_SET)) \
  $(if $(CONFIG),--config $(CONFIG)) $(if $(MAX_USD),--max-usd $(MAX_USD)) \
  $(if $(EVAL_DATA),--data $(EVAL_DATA)))

.PHONY: check test test-slow docs lint format catalog dataset publish train eval reproduce bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,pipeline,hub,train,review]'
	@touch $(STAMP)

# llama-cpp-python compiles from source (about 6 minutes on 2 cores). On x86-64 it is built for AVX2, not with
# -march=native: a native build on a CPU (or a VM) that advertises AMX crashed here in ggml's AMX kernels
# (SIGSEGV in ggml_backend_amx_mul_mat on the first completion), and a portable build runs on any AVX2 CPU.
# --no-cache-dir: pip's wheel cache does not key on CMAKE_ARGS, so a cached native wheel would come back.
LLAMA_CPP := $(shell grep -o "llama-cpp-python\[server\]==[0-9.]*" pyproject.toml)
LLAMA_CMAKE_ARGS ?= $(if $(filter x86_64,$(shell uname -m)),-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON)
$(EMBEDDED_STAMP): $(STAMP)
	@echo "Installing the embedded model (llama-cpp-python compiles once, a few minutes)..."
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/python -m pip install --quiet --no-cache-dir --no-deps '$(LLAMA_CPP)'
	$(BIN)/python -m pip install --quiet -e '.[dev,pipeline,hub,train,embedded]'
	@touch $(EMBEDDED_STAMP)

# The inner loop: lint and the test modules that start no process or server, build no wheel and load no
# model (tests/test_layout.py keeps each module named here so); under 90 s. `make test` before a commit.
CHECK_TESTS := $(addprefix tests/test_,$(addsuffix .py,catalog sampling text grading metrics scoring_rules \
  hub_ids review_agreement stats eval_units training_masks audit release_card dataset_folder cli summary \
  power experiment_findings batch_settle grade_runs))
check: $(STAMP)  ## lint + the tests that start no process (the inner loop, under 90 s)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest -q $(CHECK_TESTS)

test: $(STAMP)  ## lint, the documentation build, then the default (fast, offline) test suite
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	@$(MAKE) --no-print-directory docs
	$(BIN)/pytest

# --strict: any warning fails the build; mkdocs.yml's validation settings make a page missing from the nav,
# a link to a missing page or anchor, and an unreadable link warnings (mkdocs' default would only log them).
# Never --quiet: it silences the warnings, and --strict then has nothing to count.
docs: $(STAMP)  ## build the documentation site into site/ (mkdocs-material; API pages from the docstrings)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

test-slow: $(EMBEDDED_STAMP)  ## the end-to-end tests marked slow (embedded llama.cpp model)
	$(BIN)/pytest -m slow

dataset: $(STAMP)  ## build D_SKILL-MIX(K) into $(OUT)
	@if [ -z "$$OPENAI_API_KEY$$OPENAI_BASE_URL$(TEACHER_MODEL)$(JUDGE_MODEL)$(TEACHER_BASE_URL)$(JUDGE_BASE_URL)" ]; \
	  then $(MAKE) --no-print-directory $(EMBEDDED_STAMP); fi
	$(BIN)/skillmix dataset --k $(K) --out $(OUT) --preset $(PRESET) $(DATASET_FLAGS)

publish: $(STAMP)  ## push DATA as release VERSION of the Hub dataset REPO (HF_TOKEN or the Hub login)
	@test -n "$(REPO)" -a -n "$(VERSION)" || { echo "usage: make publish REPO=org/name VERSION=v1.0.0 DATA=out"; exit 2; }
	$(BIN)/skillmix publish --repo $(REPO) --version $(VERSION) --data $(DATA) $(if $(PRIVATE),--private) $(if $(FORCE),--force)

# DATA and OUT are passed only when given (their defaults belong to `dataset` and `publish`)
train: $(STAMP)  ## fine-tune a student with the recipe RECIPE (TRL: SFT, DPO or GRPO); DATA= replaces its dataset
	@test -n "$(RECIPE)" || { echo "usage: make train RECIPE=training/recipes/<model>/<variant>.yaml [DATA=out] [OUT=dir]"; exit 2; }
	$(BIN)/python -m skillmix.training --config $(RECIPE) $(if $(filter command line environment,$(origin DATA)),--data $(DATA)) $(if $(filter command line environment,$(origin OUT)),--output-dir $(OUT))

# K and OUT are passed only when given (the evaluation's defaults: k = 2,3,4,5, no default folder)
eval: $(STAMP)  ## evaluate MODEL (API name + MODEL_BASE_URL, a folder, or org/model@rev) on Skill-Mix(K)
	@test -n "$(filter command line environment,$(origin OUT))" || { echo "usage: make eval MODEL=... JUDGE_MODEL=... [K=2,3,4,5] [SETTING=held-out] [N=100] OUT=dir"; exit 2; }
	$(BIN)/skillmix eval --out $(OUT) $(if $(filter command line environment,$(origin K)),--k $(K)) $(EVAL_FLAGS)

EXPERIMENT ?= experiments/paper.yaml
PLAN ?=
reproduce: $(STAMP)  ## run EXPERIMENT (default the paper's) stage by stage; PLAN=1: print its plan and stop
	$(BIN)/skillmix experiment run $(EXPERIMENT) $(if $(PLAN),--plan) $(ARGS)

bench: $(STAMP)  ## dataset and evaluation throughput against a loopback server (about 10 minutes)
	$(BIN)/python bench/generation.py
	$(BIN)/python bench/evaluation.py --n 417   # 2,502 generations: the dataset bench's 2,500
	$(BIN)/python bench/evaluation.py           # the default 900
	$(BIN)/python bench/batch.py                # the bill direct vs batched (expected ratio 0.5)

lint: $(STAMP)
	$(BIN)/ruff check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

catalog: $(STAMP)  ## print the catalog's train/held-out split with its hashes
	$(BIN)/skillmix catalog --split

clean:
	rm -rf $(VENV) build site *.egg-info .pytest_cache .ruff_cache

# A local Argilla for review and the tests: argilla-server 2.8.0 in .venv-argilla (installed once), SQLite,
# Redis (apt-get install redis-server), an SQL search engine; data in .argilla/. Prints two lines to export:
#   export $(make -s argilla)        then `make argilla-stop`
.PHONY: argilla argilla-stop
argilla: $(STAMP)  ## start a local Argilla in the background; prints ARGILLA_API_URL=... and ARGILLA_API_KEY=...
	@$(BIN)/python -m skillmix.argilla_local.service start --data .argilla --venv .venv-argilla

argilla-stop: $(STAMP)  ## stop the local Argilla started by `make argilla`
	@$(BIN)/python -m skillmix.argilla_local.service stop --data .argilla

# The review loop (ARGILLA_API_URL and ARGILLA_API_KEY in the environment, e.g. `export $(make -s argilla)`):
#   make review-push DATA=out DATASET=skill-mix-review [N=100] [WORKSPACE=skillmix] [SEED=0] [TWO_ANNOTATORS=0.2]
#   make review-pull DATA=out DATASET=skill-mix-review OUT=out-reviewed [WORKSPACE=skillmix]
DATASET ?=
WORKSPACE ?=
SEED ?=
TWO_ANNOTATORS ?=
SHOW_JUDGE ?=
REVIEW_FLAGS = $(strip $(if $(WORKSPACE),--workspace $(WORKSPACE)) $(if $(SEED),--seed $(SEED)))

.PHONY: review-push review-pull
review-push: $(STAMP)  ## send a blind stratified sample of DATA's graded rows to the Argilla dataset DATASET
	@test -n "$(DATASET)" -a -n "$(filter command line environment,$(origin DATA))" || { echo "usage: make review-push DATA=out DATASET=name [N=100] [WORKSPACE=skillmix] [SEED=0] [TWO_ANNOTATORS=0.2] [SHOW_JUDGE=0]"; exit 2; }
	$(BIN)/skillmix review push --data $(DATA) --dataset $(DATASET) $(if $(N),--n $(N)) $(if $(TWO_ANNOTATORS),--two-annotators $(TWO_ANNOTATORS)) $(if $(SHOW_JUDGE),--show-judge $(SHOW_JUDGE)) $(REVIEW_FLAGS)

review-pull: $(STAMP)  ## agreement figures, and a new folder OUT where the human decisions override the judge
	@test -n "$(DATASET)" -a -n "$(filter command line environment,$(origin DATA))" -a -n "$(filter command line environment,$(origin OUT))" || { echo "usage: make review-pull DATA=out DATASET=name OUT=new-folder [WORKSPACE=skillmix] [SEED=0]"; exit 2; }
	$(BIN)/skillmix review pull --data $(DATA) --dataset $(DATASET) --out $(OUT) $(REVIEW_FLAGS)
