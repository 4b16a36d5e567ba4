# nanogpt: the two commands of the README, and what they need.
#   make demo   set up, prepare Shakespeare, train the CPU preset (a few minutes), print a sample
#   make test   set up with the test extras, then run the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_CONSTRAINTS ?= constraints.txt
RUN ?= runs/shakespeare-char-cpu

# Offline copies of the data beside the checkout (this project's machines and CI).
# Elsewhere these stay unset and nanogpt downloads the files.
SHARED_DATA ?= ../shared/data
ifneq ($(wildcard $(SHARED_DATA)/tinyshakespeare.txt),)
export NANOGPT_SHAKESPEARE ?= $(abspath $(SHARED_DATA)/tinyshakespeare.txt)
endif
ifneq ($(wildcard $(SHARED_DATA)/gpt2.tiktoken),)
export NANOGPT_GPT2_TIKTOKEN ?= $(abspath $(SHARED_DATA)/gpt2.tiktoken)
endif

.PHONY: setup setup-test demo test test-fast clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml $(TORCH_CONSTRAINTS) | $(BIN)/python
	$(BIN)/python -m pip install -q -c $(TORCH_CONSTRAINTS) -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(TORCH_CONSTRAINTS) | $(BIN)/python
	$(BIN)/python -m pip install -q -c $(TORCH_CONSTRAINTS) -e ".[test]"
	touch $(VENV)/.installed $@

setup: $(VENV)/.installed

setup-test: $(VENV)/.installed-test
	bash scripts/install-chromium.sh

demo: setup
	$(BIN)/nanogpt prepare shakespeare_char
	@if ls -d $(RUN)/ckpt-* >/dev/null 2>&1; then \
	  echo "$(RUN) already holds a run: resuming it (delete $(RUN) to train afresh)"; \
	  $(BIN)/nanogpt train --preset shakespeare-char-cpu --out-dir $(RUN) --init-from resume; \
	else \
	  $(BIN)/nanogpt train --preset shakespeare-char-cpu --out-dir $(RUN); \
	fi
	$(BIN)/nanogpt sample $(RUN) --max-new-tokens 500

test: setup-test
	$(BIN)/python -m pytest -q

test-fast: setup-test
	$(BIN)/python -m pytest -q -m "not slow and not browser"

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
