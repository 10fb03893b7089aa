# The two commands of the README: `make demo` and `make test`. Both install what they need.
.PHONY: setup demo test bench lint

setup:
	./scripts/setup.sh

demo: setup
	.venv/bin/controlroom --data-dir data/demo demo

test: setup
	./scripts/services.sh
	.venv/bin/ruff check .
	.venv/bin/lint-imports
	# Two workers, a module at a time each, slow modules first (docs/design/testing.md).
	.venv/bin/pytest -p no:cacheprovider -n 2 --dist loadfile --no-loadscope-reorder --durations=30

bench: setup
	./scripts/services.sh
	.venv/bin/python -m bench
