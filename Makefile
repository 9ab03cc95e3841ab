# The two commands of the README: `make demo` (install, then the main job on the embedded default) and
# `make test` (install, then the test suite). Both start with the idempotent install step.
PY := .venv/bin/python
DATA := data/synthetic
CONFIG := configs/synthetic-ecommerce.yaml

.PHONY: install demo test test-fast clean

install:
	@bash scripts/install.sh

demo: install
	@test -f $(DATA)/interactions.csv || $(PY) scripts/generate_synthetic.py --out $(DATA)
	$(PY) -m recsys_spark validate --config $(CONFIG)
	$(PY) -m recsys_spark pipeline run --config $(CONFIG) --samples 3

# Two worker processes, each test module whole in one (its module-scoped fixtures built once).
test: install
	$(PY) -m pytest -q -n 2 --dist loadscope

# The daily tier: the core and everything without Spark (about half a minute).
test-fast: install
	$(PY) -m pytest -q -m "not spark"

clean:
	rm -rf .venv data warehouse out .pytest_cache
