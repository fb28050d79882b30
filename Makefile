# make demo   install into .venv and run the demo screen end to end (LCD_HOME, default ~/.lcd; SEED=N)
# make test   install into .venv and run the tests
# make pretrain  after make demo: pre-train the five ablation variants (CPU preset) + the ablation table
VENV ?= .venv
SEED ?= 0
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

.PHONY: install demo test ui bench pretrain clean-venv

install: $(STAMP)

# One resolver run with uv (about 15 s here, against about 110 s for pip): uv is installed into the
# venv by pip, then given pip's own configured find-links and extra index URLs (where the CPU build
# of torch 2.13.0 lies; a plain `torch` requirement would pull the CUDA build and several GB of
# NVIDIA packages). Where uv cannot resolve (no registry, no such wheel), pip does the same install.
PIP_LINKS := $(shell python3 -m pip config get global.find-links 2>/dev/null)
PIP_INDEXES := $(shell python3 -m pip config get global.extra-index-url 2>/dev/null)
UV_SOURCES := $(foreach l,$(PIP_LINKS),--find-links $(l)) $(foreach u,$(PIP_INDEXES),--extra-index-url $(u)) \
	--index-strategy unsafe-best-match
$(STAMP): pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PIP) install -qq --disable-pip-version-check -c constraints.txt uv
	$(VENV)/bin/uv pip install -q --python $(PY) $(UV_SOURCES) "torch==2.13.0" -c constraints.txt -e ".[test]" \
	  || { $(PIP) install -qq --disable-pip-version-check "torch==2.13.0" \
	       && $(PIP) install -qq --disable-pip-version-check -c constraints.txt -e ".[test]"; }
	$(PY) -c "import lcd_core.embedding.vit, lcd_assets.definitions"
	touch $(STAMP)

demo: install
	$(VENV)/bin/lcd demo --seed $(SEED)

test: install
	$(PY) -m pytest -q -n 2 --dist loadfile --durations=15

pretrain: install
	$(VENV)/bin/lcd pretrain

ui: install
	$(VENV)/bin/lcd ui

bench: install
	$(PY) benchmarks/bench_embed.py
	$(PY) benchmarks/bench_pretrain.py

clean-venv:
	rm -rf $(VENV)
