# The two commands of the README:
#   make demo   - install, then generate four images offline (images + manifest.json under out/)
#   make test   - install the development tools, then lint and run every test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PROMPT ?= a red porsche
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: demo test install install-dev lint check synth deploy bench docs-screenshot clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e ".[dev]"
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: install
	$(BIN)/imagegen generate "$(PROMPT)" --count 4 --out out/
	@echo "imagegen is installed in $(VENV)/: run '. $(VENV)/bin/activate' to put it on your PATH (README, Use it)"

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy lambdas/image_pipeline imagegen stacks
	$(BIN)/lint-imports --no-logo

# The workflow suite also runs on moto as shipped, its fixes off: they must not change what the
# workflow does (docs/decisions.md, "Three fixes to moto's interpreter").
# The workflow suite once on moto as shipped (the fixes off) first, then every suite with them:
# the last summary line is the whole run's.
test: lint
	IMAGEGEN_MOTO_SPEEDUPS=0 $(BIN)/pytest -q tests/workflow
	$(BIN)/pytest

synth: install-dev
	$(BIN)/python app.py

# One deploy command (docs/deploy.md): the read-only preflight (stops on a model that cannot be called),
# the CDK bootstrap (a no-op once done), then the stack; its outputs go to cdk-outputs.json.
deploy: install-dev
	@command -v cdk >/dev/null || { echo "the CDK CLI is missing: npm install -g aws-cdk" >&2; exit 1; }
	$(BIN)/imagegen doctor
	PATH="$(CURDIR)/$(BIN):$$PATH" cdk bootstrap
	PATH="$(CURDIR)/$(BIN):$$PATH" cdk deploy --require-approval broadening --outputs-file cdk-outputs.json

bench: install-dev
	$(BIN)/python benchmarks/run_all.py

# The docs' pictures of the web page (web.png, web-phone.png, web-view.png, web-edit.png, web-refined.png):
# four browser tests, told where to save them (make test saves nothing).
docs-screenshot: install-dev
	@test -x "$${IMAGEGEN_CHROMIUM:-/usr/bin/chromium}" || { echo "chromium is missing: apt-get install -y chromium" >&2; exit 1; }
	IMAGEGEN_WEB_SCREENSHOT=$(CURDIR)/docs/img/web.png $(BIN)/pytest -q tests/e2e/test_web.py \
	  -k "test_prompt_progress_four_images_pick_download_and_rerun or test_results_are_brought_into_view or test_a_click_opens_the_full_size_view \
	  or test_upscale_vary_and_edit_an_image"

clean:
	rm -rf $(VENV) cdk.out out .pytest_cache .ruff_cache .mypy_cache .import_linter_cache
