# Two commands: `make demo` (the main job) and `make test` (the tests, then the docs built strictly). Both create .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test docs lint bench clean gpu-prepare

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch/torchvision resolve to the local wheels on the dev machine; elsewhere, to PyPI.
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

# The demo: baseline vs CropMix on the CIFAR-10 subset shipped in the repo (5,000 train / 1,500 test
# images), a small fastnet, offline; then the comparison table and plots, and the CropMix picture.
DEMO_DATA := examples/cifar10_subset/cifar10_subset.npz
DEMO_TRAIN := $(BIN)/cropmix train --dataset npz --data $(DEMO_DATA) --model fastnet \
	--model-kwargs '{"widths": [8, 16, 32, 64]}' --epochs 15 --batch-size 128 --lr 0.2 --schedule onecycle \
	--workers 1 --threads 2
DEMO_EVAL := --fgsm --corruptions --max-corruption-images 200

demo: $(STAMP)
	rm -rf out/demo
	$(DEMO_TRAIN) --aug baseline --out out/demo/baseline
	$(DEMO_TRAIN) --aug cropmix --preset cifar --out out/demo/cropmix
	$(BIN)/cropmix eval out/demo/baseline $(DEMO_EVAL) > /dev/null
	$(BIN)/cropmix eval out/demo/cropmix $(DEMO_EVAL) > /dev/null
	$(BIN)/cropmix compare out/demo/baseline out/demo/cropmix --out out/demo/compare
	$(BIN)/cropmix show examples/photos/*.jpg --preset imagenet -n 6 --out out/show.png

test: $(STAMP)
	$(BIN)/python -m pytest -q
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# The documentation site (docs/, mkdocs.yml) into build/site; --strict fails on a broken link or API page.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# What benchmarks/gpu_session.sh carries to a GPU machine without a network, into runs/carry (git-ignored):
# CIFAR-10 packed as JPEG bytes, the photos, and the kornia wheels for its Python. DATA holds cifar10/ and photos/.
gpu-prepare:
	bash benchmarks/gpu_session.sh prepare $(DATA)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) out
