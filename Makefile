# facetrain — one-command set-up, tests and the main job. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
IMAGES ?= ../shared/data/faces-dev
HP ?= {"weights": "none"}

SAM := .venv-sam/bin/sam
SAM_PYTHON ?= 3.13.0
# One region for `make image`, `make deploy` and `make delete`: AWS_REGION, else AWS_DEFAULT_REGION, else
# `aws configure get region`; none: they stop and say so (tools/deploy_checks.py region).
REGION_OF = $(BIN)/python tools/deploy_checks.py region
# podman's settings for this project (runc, cgroupfs, no default ulimits): every podman call of the targets.
export CONTAINERS_CONF := $(CURDIR)/container/podman/containers.conf

.PHONY: help setup tools lock lock-check test lint format bench bench-scale run job image image-local image-test podman build invoke lambda-runtime deploy deploy-check delete clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

# setup's exports: runtime=onnx's networks into the dev cache (FACETRAIN_ONNX_DIR, else ~/.cache/facetrain/onnx;
# a folder already there is kept): MTCNN and InceptionResnetV1 for weights=none seed 0, and vggface2 when cached.
setup: ## create .venv from requirements/dev.txt (dlib-resnet included), the ONNX exports, plus the tool venvs (~7.5 GB)
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ needed"'
	$(PYTHON) -m venv $(VENV)
	$(call install_lock,$(VENV),requirements/dev.txt)
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/pip check
	$(BIN)/python tools/locks.py installed requirements/dev.txt
	$(BIN)/python -m facetrain.inference.export --cache --weights none --seed 0
	@if $(BIN)/python -c 'import sys; from facetrain.inference.model_files import cached_weights; sys.exit(not cached_weights("vggface2").is_file())'; then \
		$(BIN)/python -m facetrain.inference.export --cache --weights vggface2; \
	else echo "note: no vggface2 weights cached: the first job that uses them makes their ONNX export"; fi
	$(MAKE) --no-print-directory tools
	$(MAKE) --no-print-directory podman

# $(call install_lock,VENV,LOCK): pip and setuptools from requirements/build.txt first, then LOCK, every
# file checked against the lock's hashes; sdists build on the locked setuptools, not in an unlocked
# isolated build environment.
define install_lock
	$(1)/bin/pip install --quiet --require-hashes --no-deps -r requirements/build.txt
	$(1)/bin/pip install --quiet --require-hashes --no-build-isolation -r $(2)
endef

tools: ## SAM CLI, checkov and the SageMaker SDK (facetrain launch) in venvs of their own locks, asl-validator via npx
	$(PYTHON) -m venv .venv-sam
	$(call install_lock,.venv-sam,requirements/sam-cli.txt)
	.venv-sam/bin/python tools/locks.py installed requirements/build.txt requirements/sam-cli.txt
	$(PYTHON) -m venv .venv-checkov
	$(call install_lock,.venv-checkov,requirements/checkov.txt)
	.venv-checkov/bin/python tools/locks.py installed requirements/build.txt requirements/checkov.txt
	$(PYTHON) -m venv .venv-launch
	$(call install_lock,.venv-launch,requirements/launch.txt)
	.venv-launch/bin/pip install --quiet --no-deps --no-build-isolation -e .
	.venv-launch/bin/python tools/locks.py installed requirements/build.txt requirements/launch.txt
	npx --yes asl-validator@4.0.0 --version >/dev/null
	@PYENV_VERSION=$(SAM_PYTHON) python3 --version >/dev/null 2>&1 || echo "note: sam build needs Python $(SAM_PYTHON) (pyenv install $(SAM_PYTHON))"

lock: ## re-resolve every lock file (requirements/, container/, lambdas/); one package: make lock UPGRADE=moto
	$(BIN)/python tools/locks.py write $(addprefix --upgrade-package ,$(UPGRADE))

lock-check: ## fail when a lock file is out of date with pyproject.toml or its .in file (CI runs it)
	$(BIN)/python tools/locks.py check

test: ## run the whole test suite (2 workers)
	$(BIN)/pytest -n 2 -q

lint: ## ruff lint and format check, and the import contracts (pyproject.toml [tool.importlinter])
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: ## apply ruff fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

run: ## the whole workflow offline on a folder: make run IMAGES=dir [OUT=../facetrain-out] (outside the checkout)
	$(BIN)/facetrain run "$(IMAGES)" --out "$(or $(OUT),../facetrain-out)"

bench: ## job (runtime onnx and torch) vs plain facenet-pytorch loop on faces-dev, real-size, phone-size (targets)
	$(BIN)/python benchmarks/bench_job.py $(IMAGES)

bench-scale: ## incremental retrain (+1% photos) vs full, and 1 vs 2 local hosts (times, equality)
	$(BIN)/python benchmarks/bench_scale.py $(IMAGES)

job: ## run the training job on a folder of <person>/<photo>: make job IMAGES=dir [HP='{"weights":"none"}']
	rm -rf .job && mkdir -p .job/input/config .job/input/data
	ln -s "$(abspath $(IMAGES))" .job/input/data/face_imgs
	echo '$(HP)' > .job/input/config/hyperparameters.json
	SAGEMAKER_BASE_DIR="$(CURDIR)/.job" $(BIN)/train
	@echo "outputs in .job/model/"

image: ## build and push the training image to ECR (needs Docker and AWS credentials; region: see AWS_REGION)
	region=$$($(REGION_OF)) && AWS_REGION=$$region container/build_and_push.sh facetrain

image-local: ## build the training image with podman into localhost/facetrain:local, no registry needed (3-5 min cold)
	container/podman/build_local.sh

image-test: ## run that image as SageMaker does (podman, no network, /opt/ml mounted) on faces-dev: tests/image
	$(BIN)/pytest -q tests/image

podman: ## install podman, buildah, runc, debootstrap with apt-get when podman is missing (root), else say what to install
	container/podman/install_podman.sh

build: ## sam build (the Lambdas' layer is built for python3.13)
	PYENV_VERSION=$(SAM_PYTHON) $(SAM) build

LAMBDA_RUNTIME_IMAGE := localhost/facetrain-lambda-python:3.13

invoke: ## sam local invoke on the sam build output, python3.13 stand-in, moto: make invoke FUNCTION=ValidateFunction EVENT=events/validate.json [BEFORE='Fn=event ...']
	@test -n "$(FUNCTION)" -a -n "$(EVENT)" || { echo "usage: make invoke FUNCTION=ValidateFunction EVENT=events/validate.json" >&2; exit 2; }
	@podman image exists $(LAMBDA_RUNTIME_IMAGE) || container/lambda-runtime/build.sh $(LAMBDA_RUNTIME_IMAGE)
	@$(BIN)/python -c 'import sys; sys.path.insert(0, "container/lambda-runtime"); import local_invoke; sys.exit(not local_invoke.build_is_fresh())' || $(MAKE) --no-print-directory build
	$(BIN)/python container/lambda-runtime/local_invoke.py "$(FUNCTION)" "$(EVENT)" $(foreach step,$(BEFORE),--before "$(step)")

lambda-runtime: ## build the python3.13 Lambda stand-in image for make invoke (container/lambda-runtime, podman, ~2.5 min cold)
	container/lambda-runtime/build.sh $(LAMBDA_RUNTIME_IMAGE)

deploy: deploy-check build ## sam deploy with the image URI that `make image` wrote (extra: DEPLOY_PARAMETERS='K=V ...')
	region=$$($(REGION_OF)) && \
	$(SAM) deploy --region "$$region" --parameter-overrides "TrainingImageUri=$$(cat container/image_uri.txt) $(DEPLOY_PARAMETERS)"

deploy-check: ## refuse, before building, an image of another region than the stack's (and poll waits out of order)
	@test -s container/image_uri.txt || { echo "no container/image_uri.txt: run make image first" >&2; exit 1; }
	@region=$$($(REGION_OF)) && \
	$(BIN)/python tools/deploy_checks.py check "$$region" "TrainingImageUri=$$(cat container/image_uri.txt) $(DEPLOY_PARAMETERS)"

delete: ## sam delete: removes the stack, its bucket and everything in it (see docs/workflow.md)
	region=$$($(REGION_OF)) && $(SAM) delete --region "$$region"

clean: ## remove build outputs (keeps .venv)
	rm -rf .job .aws-sam .pytest_cache .ruff_cache
