# OncoLens: `make run` starts the demo app, `make test` runs the whole suite.
# Both create the virtual environment and install what they need on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DB     ?= $(HOME)/.oncolens/oncolens.duckdb
PORT   ?= 8501
PATIENTS ?= 2000

.PHONY: run test check install install-dev demo bench lint clean pacs-deps browser-deps screenshots fuzz e2e-full viewer

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip

# torch==2.13.0 first: it is a CPU build already on disk; any other pick pulls CUDA (see ../shared/ENVIRONMENT.md).
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install -e '.[dev]'
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# Demo data is generated once; delete the file (or run `oncolens demo --force`) to rebuild it.
$(DB): | $(VENV)/.installed
	$(BIN)/oncolens demo --patients $(PATIENTS) --db $(DB)

demo: $(DB)

# Ends with the app open in the browser (where this machine has one) on its sign-in page: what OncoLens is,
# the demo accounts and where each role starts.
run: $(VENV)/.installed $(DB)
	$(BIN)/oncolens serve --db $(DB) --port $(PORT) --open

# The habits of the house first (docs/architecture.md): lint, format, the import contract, then the suite
# (its 40 slowest tests printed at the end: the suite must stay well under 15 minutes on 2 cores;
# tests/conftest.py makes the browser tests one unit and hands out the slowest files first).
test: $(VENV)/.installed-dev pacs-deps browser-deps check
	$(BIN)/python -m pytest -n 2 --dist loadfile --durations=40

check: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

# The PACS tests run a real Orthanc (docs/hospital.md). Installed where apt-get and root (or sudo) are at hand;
# otherwise this says why and the PACS tests skip with that reason. Never fails the build.
pacs-deps:
	@if command -v Orthanc >/dev/null 2>&1 || [ -x /usr/sbin/Orthanc ]; then \
		[ -f /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || echo "pacs-deps: orthanc-dicomweb missing"; \
	elif ! command -v apt-get >/dev/null 2>&1; then \
		echo "pacs-deps: no apt-get here; install Orthanc with its DICOMweb plugin to run the PACS tests"; \
	elif [ "$$(id -u)" = 0 ]; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq orthanc orthanc-dicomweb) \
			|| echo "pacs-deps: apt-get could not install orthanc; the PACS tests will skip"; \
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then \
		(sudo -n apt-get update -qq && sudo -n DEBIAN_FRONTEND=noninteractive apt-get install -y -qq orthanc orthanc-dicomweb) \
			|| echo "pacs-deps: apt-get could not install orthanc; the PACS tests will skip"; \
	else \
		echo "pacs-deps: not root and no sudo; the PACS tests will skip"; \
	fi

# The browser tests (tests/e2e) drive Debian's Chromium through Playwright (never `playwright install`).
# Installed like pacs-deps: where apt-get and root (or sudo) are at hand; otherwise says why, and the
# browser tests skip with that reason. Never fails the build.
browser-deps:
	@if command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]; then \
		:; \
	elif ! command -v apt-get >/dev/null 2>&1; then \
		echo "browser-deps: no apt-get here; install Chromium (or set ONCOLENS_CHROMIUM) to run the browser tests"; \
	elif [ "$$(id -u)" = 0 ]; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
			|| echo "browser-deps: apt-get could not install chromium; the browser tests will skip"; \
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then \
		(sudo -n apt-get update -qq && sudo -n DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
			|| echo "browser-deps: apt-get could not install chromium; the browser tests will skip"; \
	else \
		echo "browser-deps: not root and no sudo; the browser tests will skip"; \
	fi

# The chart check at both screen sizes on both stores (`make test` walks each store at one size;
# tests/e2e/test_charts.py says why): about ten minutes more.
e2e-full: $(VENV)/.installed-dev browser-deps
	ONCOLENS_E2E_ALL_VIEWPORTS=1 $(BIN)/python -m pytest -q -p no:cacheprovider tests/e2e

# README screenshots (docs/screenshots/), taken by the browser tests against a fresh demo clinic.
screenshots: $(VENV)/.installed-dev browser-deps
	ONCOLENS_README_SCREENSHOTS=docs/screenshots $(BIN)/python -m pytest -q tests/e2e

# The property-based tests with thousands of mutated files per property (minutes); `make test` runs the
# same properties on a few hundred, seeded (docs/security.md).
fuzz: $(VENV)/.installed-dev
	ONCOLENS_FUZZ=1 $(BIN)/python -m pytest -q -p no:cacheprovider tests/models/dicom/test_fuzz.py

# Rebuilds the image viewer's bundle (dashboard/components/viewer/frontend/build, committed) with npm:
# only after changing its source or NiiVue's version; `make run` and `make test` never need Node.
VIEWER := dashboard/components/viewer/frontend
viewer:
	cd $(VIEWER) && npm ci --no-audit --no-fund && npm run build

bench: $(VENV)/.installed-dev browser-deps
	$(BIN)/python -m bench

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info

# The built-in 3D model (docs/volumes.md): retrain it into models/weights/brain_mets_3d (15-30 min on
# the shared 2-core machine), or retrain into a temporary folder and compare every file's sha256
# with the committed bundle (exit 1 when one differs).
.PHONY: weights-3d weights-3d-check
weights-3d: $(VENV)/.installed
	$(BIN)/python -m models.training.train3d

weights-3d-check: $(VENV)/.installed
	$(BIN)/python -m models.training.train3d --check
