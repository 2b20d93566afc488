# The two commands of README.md: `make run` and `make test`.
.PHONY: setup run test lint model bench bench-e2e bench-floor bench-nlu bench-nlu-real bench-kb bench-notices bench-workers bench-emergencies

setup:
	@bash scripts/setup.sh

model: setup
	@.venv/bin/python -m bot.rasa_process

run: setup model
	@.venv/bin/gridbot run

test: setup model
	@bash scripts/test.sh

lint: setup
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

bench-nlu-real: setup model
	@.venv/bin/python -m bench.nlu_real

bench-workers: setup
	@.venv/bin/python bench/worker_words.py
