# Two entry points, both self-contained on a fresh machine (Python 3.10+ on PATH):
#   make demo   set up .venv and run the embedded demo (synthetic data, CPU)
#   make test   set up .venv and run the tests: the unit tier first, then the rest of pytest with nbval over the
#               book's chapters, then the rehearsal
# and, while working on the code:
#   make test-unit  the unit tier alone: no training, no other process, no browser, no CUDA (about a minute)
#   make test-fast  the tests without the chapters (nbval) and without those marked slow (a few minutes)
#   make rehearsal  every chapter's real-data branch and the CLI's paper recipes on stand-ins (SATLIB_SMOKE=1)
#   make lint       ruff over the code (rules in pyproject.toml)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-unit test-fast rehearsal lint book clean

# The tiers are chosen by SATLIB_TEST_TIER (unit, rest; tests/conftest.py: the markers that leave the unit tier, and
# the guard that fails a unit test that trains or starts a process).
PYTEST := $(BIN)/python -m pytest -p no:cacheprovider

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/satlib demo

# pytest exits 5 when it collects nothing: that is a failure here, never a pass. Each stage runs only when the
# one before it passed: the unit tier (a broken import fails in a minute), the rest of tests/ with nbval over
# the chapters, then the rehearsal.
test: $(STAMP)
	@SATLIB_TEST_TIER=unit $(PYTEST) tests; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no unit tests (exit 5)" >&2; fi; \
	if [ $$rc -ne 0 ]; then exit $$rc; fi; \
	SATLIB_TEST_TIER=rest $(PYTEST) tests; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests beyond the unit tier (exit 5)" >&2; fi; \
	if [ $$rc -ne 0 ]; then exit $$rc; fi; \
	$(PYTEST) --nbval-lax --durations=25 book; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no chapters (exit 5)" >&2; fi; \
	if [ $$rc -ne 0 ]; then exit $$rc; fi; \
	$(BIN)/python book/rehearse.py

test-unit: $(STAMP)
	@SATLIB_TEST_TIER=unit $(PYTEST) tests; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests (exit 5)" >&2; fi; exit $$rc

test-fast: $(STAMP)
	@$(PYTEST) -m "not slow" tests; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests (exit 5)" >&2; fi; exit $$rc

# The chapters themselves are checked by nbval (make test), not linted.
lint: $(STAMP)
	$(BIN)/ruff check satlib bench tests data_scripts book/*.py

# The rehearsal: stand-ins of CUB, ImageNet and OpenImages in their real layouts, every chapter's real-data
# branch (SATLIB_SMOKE=1 SATLIB_FULL_RUN=1, executed copies in a scratch folder; the committed chapters keep
# their outputs), then the CLI's train/evaluate/predict on the paper recipes (book/rehearse.py).
rehearsal: $(STAMP)
	$(BIN)/python book/rehearse.py

# The book. `make notebooks` executes every chapter of _toc.yml in place (the committed notebooks carry
# their outputs; NB=book/05_measuring.ipynb runs only that one); `make book` builds the HTML into
# _build/html and runs no code (execute_notebooks: off), failing on any Sphinx warning.
.PHONY: notebooks
notebooks: $(STAMP)
	$(BIN)/python book/run_notebooks.py $(NB)

book: $(STAMP)
	$(BIN)/jupyter-book build . --warningiserror --keep-going

clean:
	rm -rf _build
