# The two commands of README.md: `make run` and `make test`.
.PHONY: setup setup-dev lock run test lint model bench bench-e2e bench-floor bench-nlu bench-nlu-real bench-kb bench-notices bench-workers bench-emergencies bench-duplicates bench-warnings

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

lint: setup-dev
	@.venv/bin/ruff check .

bench: setup model
	@.venv/bin/python bench/e2e_latency.py

bench-e2e: setup model
	@.venv/bin/python -m bench.e2e

bench-floor: setup model
	@.venv/bin/python -m bench.turn_floor

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
