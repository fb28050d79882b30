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

# torch first, pinned to the CPU build (pip's configured find-links hold torch 2.13.0+cpu; a
# plain `torch` requirement would pull the CUDA build and several GB of NVIDIA packages).
$(STAMP): pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PIP) install -qq --disable-pip-version-check "torch==2.13.0"
	$(PIP) install -qq --disable-pip-version-check -c constraints.txt -e ".[test]"
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
