# The two set-up commands of README.md: `make demo` and `make test`. Each creates the virtual
# environment .venv (Python 3.10+) and installs pescore_nb with the exact versions in constraints.txt.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
DEMO_OUT ?= pescore-demo

.PHONY: demo test docs docs-demo chromium constraints

$(INSTALLED): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

# The main job on the built-in data and model: no download, no GPU.
demo: $(INSTALLED)
	$(BIN)/pescore demo --out $(DEMO_OUT)

# The whole test suite, the real-browser test included (Debian's chromium is installed if missing).
test: $(INSTALLED) chromium
	$(BIN)/python -m pytest

# The documentation site in docs/_build/html, offline, warnings as errors. It executes the notebooks
# (each under five minutes, as tests/test_notebooks.py checks); inside `make test`, tests/test_site.py
# renders the copies tests/test_notebooks.py executed instead.
docs: $(INSTALLED)
	PESCORE_DOCS_NOTEBOOKS=execute $(BIN)/python -m sphinx -W --keep-going -q -b html docs docs/_build/html
	@echo "Open docs/_build/html/index.html"

# After `make demo`: the demo's verdict table, figures and version for the site (docs/demo/), to commit.
docs-demo: $(INSTALLED)
	$(BIN)/python docs/demo_output.py $(DEMO_OUT) docs/demo

chromium:
	@command -v chromium >/dev/null 2>&1 || { \
		echo "Installing Debian's chromium for the browser test (needs root or sudo)"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -q && $$SUDO apt-get install -y -q chromium chromium-driver; }

constraints: $(INSTALLED)
	{ sed -n '1,3p' constraints.txt; $(BIN)/python -m pip list --format=freeze --exclude-editable | grep -v '^pip=='; } > constraints.new
	mv constraints.new constraints.txt
