# The two commands: `make demo` and `make test`. Each creates .venv and installs what it needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install -q -c constraints.txt
STAMP := $(VENV)/.installed

.PHONY: demo test lint install browser postgres clean results

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

# The docs' current-results tables (docs/results/<protocol>.md), from the records in benchmarks/configs/.
results: $(STAMP)
	$(PY) -m recunlearn.bench.records benchmarks/configs docs/results

# The HTML report's screenshot test renders it in headless Chromium from Debian's packages.
browser:
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
		|| { echo "make test needs Debian's chromium: apt-get install chromium (as root)"; exit 1; }

# The service tests also run on PostgreSQL ($$RECUNLEARN_TEST_POSTGRES_URL, default the server on
# 127.0.0.1:5432, database test): without a server there, install and start Debian's, with trust auth
# on 127.0.0.1 and a database test.
postgres:
	@if [ -n "$$RECUNLEARN_TEST_POSTGRES_URL" ]; then echo "postgres: tests use $$RECUNLEARN_TEST_POSTGRES_URL"; \
	elif pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then echo "postgres: server on 127.0.0.1:5432 is up"; \
	else \
		echo "postgres: no server on 127.0.0.1:5432; installing and starting Debian's postgresql (needs root)"; \
		{ command -v pg_ctlcluster >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; }; } \
			|| { echo "make test needs PostgreSQL: apt-get install postgresql (as root), or set RECUNLEARN_TEST_POSTGRES_URL"; exit 1; }; \
		version=$$(ls /etc/postgresql | sort -n | tail -1); \
		[ -n "$$version" ] || { pg_createcluster $$(ls /usr/lib/postgresql | sort -n | tail -1) main && version=$$(ls /etc/postgresql | sort -n | tail -1); }; \
		hba=/etc/postgresql/$$version/main/pg_hba.conf; \
		grep -q '^host all all 127.0.0.1/32 trust' $$hba || sed -i '1i host all all 127.0.0.1/32 trust' $$hba; \
		pg_ctlcluster $$version main start 2>/dev/null || pg_ctlcluster $$version main reload; \
		for i in $$(seq 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done; \
		psql -h 127.0.0.1 -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'test'" | grep -q 1 \
			|| psql -h 127.0.0.1 -U postgres -c "CREATE DATABASE test" >/dev/null; \
		echo "postgres: started PostgreSQL $$version on 127.0.0.1:5432 (trust auth from 127.0.0.1, database test)"; \
	fi

# Lint: ruff (rules and format in pyproject.toml) and mypy over the typed public API.
$(VENV)/.lint-installed: $(STAMP)
	$(PIP) -e '.[lint]'
	touch $@

lint: $(VENV)/.lint-installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: $(STAMP) browser postgres
	OMP_NUM_THREADS=1 $(PY) -m pytest -q tests

clean:
	rm -rf $(VENV) runs .pytest_cache
