# facetrain — one-command set-up, tests and the main job. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
IMAGES ?= ../shared/data/faces-dev
HP ?= {"weights": "none"}

.PHONY: help setup test lint format bench job image deploy delete clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

setup: ## create .venv with everything (torch CUDA build from PyPI runs on CPU; ~5 GB)
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ needed"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[job,lambdas,offline,dev]'

test: ## run the whole test suite (2 workers)
	$(BIN)/pytest -n 2 -q

lint: ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: ## apply ruff fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: ## job vs plain facenet-pytorch loop on ../shared/data/faces-dev (photos/s, ratio, memory)
	$(BIN)/python benchmarks/bench_job.py $(IMAGES)

job: ## run the training job on a folder of <person>/<photo>: make job IMAGES=dir [HP='{"weights":"none"}']
	rm -rf .job && mkdir -p .job/input/config .job/input/data
	ln -s "$(abspath $(IMAGES))" .job/input/data/face_imgs
	echo '$(HP)' > .job/input/config/hyperparameters.json
	SAGEMAKER_BASE_DIR="$(CURDIR)/.job" $(BIN)/train
	@echo "outputs in .job/model/"

image: ## build and push the training image to ECR (needs Docker and AWS credentials)
	container/build_and_push.sh facetrain

clean: ## remove build outputs (keeps .venv)
	rm -rf .job .aws-sam .pytest_cache .ruff_cache
