# Two entry points, both self-contained on a fresh machine (Python 3.10+ on PATH):
#   make demo   set up .venv and run the embedded demo (synthetic data, CPU)
#   make test   set up .venv and run the tests (pytest + nbval over the book's chapters, then the rehearsal)
# and, while working on the code:
#   make test-fast  the tests without the chapters (nbval) and without those marked slow (a few minutes)
#   make rehearsal  every chapter's real-data branch and the CLI's paper recipes on stand-ins (SATLIB_SMOKE=1)
#   make lint       ruff over the code (rules in pyproject.toml)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-fast rehearsal lint book clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/satlib demo

# pytest exits 5 when it collects nothing: that is a failure here, never a pass. The rehearsal runs after
# the tests pass.
test: $(STAMP)
	@$(BIN)/python -m pytest --nbval-lax -p no:cacheprovider; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests (exit 5)" >&2; fi; \
	if [ $$rc -ne 0 ]; then exit $$rc; fi; \
	$(BIN)/python book/rehearse.py

test-fast: $(STAMP)
	@$(BIN)/python -m pytest -m "not slow" -p no:cacheprovider tests; rc=$$?; \
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
