# The two set-up commands of README.md: `make demo` and `make test`. Each creates the virtual
# environment .venv (Python 3.10+) and installs pescore_nb with the exact versions in constraints.txt.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
DEMO_OUT ?= pescore-demo

.PHONY: demo test chromium constraints

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

chromium:
	@command -v chromium >/dev/null 2>&1 || { \
		echo "Installing Debian's chromium for the browser test (needs root or sudo)"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -q && $$SUDO apt-get install -y -q chromium chromium-driver; }

constraints: $(INSTALLED)
	{ sed -n '1,3p' constraints.txt; $(BIN)/python -m pip list --format=freeze --exclude-editable | grep -v '^pip=='; } > constraints.new
	mv constraints.new constraints.txt
