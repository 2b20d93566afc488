# The two commands of README.md: `make run` and `make test`.
.PHONY: setup setup-dev lock run test test-fast lint model bench bench-e2e bench-floor bench-restated bench-nlu bench-nlu-real bench-kb bench-notices bench-workers bench-emergencies bench-duplicates bench-warnings

# When this `make` began: set-up and training record their steps' seconds against it, and `gridbot run` prints them
# once GridBot is ready (bot/setup_times.py).
export GRIDBOT_MAKE_STARTED := $(shell date +%s)

# The app's and Rasa's virtualenvs and the embedding model's exports (scripts/setup.sh); -dev adds what `make test`
# needs: the test tools, the tools virtualenv and the exports' reference, the wechaty test peer.
setup:
	@bash scripts/setup.sh

setup-dev:
	@bash scripts/setup.sh --dev

# requirements.lock, requirements-dev.lock and requirements-tools.lock from requirements*.txt (after editing those;
# scripts/lock.sh).
lock:
	@bash scripts/lock.sh

model: setup
	@.venv/bin/python -m bot.rasa_process

run: setup model
	@.venv/bin/gridbot run

test: setup-dev model
	@bash scripts/test.sh

# The unit tier alone (tests/support/tiers.py): no Redis, PostgreSQL, Rasa, browser or peer — none needs to run.
test-fast: setup-dev
	@bash scripts/test.sh --fast

lint: setup-dev
	@.venv/bin/ruff check .

bench: setup model
	@.venv/bin/python bench/e2e_latency.py

bench-e2e: setup model
	@.venv/bin/python -m bench.e2e

bench-floor: setup model
	@.venv/bin/python -m bench.turn_floor

# Issue #26's targets in one run: e2e p50 / floor at 1, 8, 32 on SQLite and PostgreSQL, msg/s, import encode time,
# search p99 at 100k entries, resident memory (bench/restated.py; BENCH_ARGS="--rounds 1 --encode 1000" for a short run).
bench-restated: setup model
	@.venv/bin/python -m bench.restated $(BENCH_ARGS)

bench-nlu: setup model
	@.venv/bin/python bench/nlu_quality.py

bench-kb: setup
	@.venv/bin/python bench/kb_search.py

bench-notices: setup
	@.venv/bin/python bench/notice_fanout.py

bench-emergencies: setup
	@.venv/bin/python -m bench.emergencies

bench-duplicates: setup
	@.venv/bin/python -m bench.duplicates

bench-warnings: setup
	@.venv/bin/python -m bench.warnings_replay

bench-nlu-real: setup model
	@.venv/bin/python -m bench.nlu_real

bench-workers: setup
	@.venv/bin/python bench/worker_words.py
