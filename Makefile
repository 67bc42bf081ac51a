# The two commands a newcomer needs: `make demo` and `make test`. Each creates .venv if missing,
# installs torch first (the pinned CPU wheel; a plain `torch` would pull a multi-GB CUDA build),
# then the project, then runs.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
TEST_STAMP := $(VENV)/.installed-test-stamp

.PHONY: demo pipeline test test-slow bench mutation install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

# The tests also exercise the optional DALI decode path on CPU (nvidia-dali-cuda120 runs CPU
# pipelines without a GPU).
$(TEST_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[test,dali]'
	touch $(TEST_STAMP)

install: $(STAMP)

# Build the ultrasound shards from the bundled samples, check them against the committed lock,
# then train the tiny VLM on them for a few steps on the CPU (the loss falls).
demo: $(STAMP)
	$(BIN)/datakit build ultrasound --workers 2
	$(BIN)/datakit verify ultrasound
	rm -rf runs/tiny-demo
	$(BIN)/fleming train --config megatron_fleming/configs/tiny_demo.yaml --data shards/ultrasound

# The whole recipe in miniature: data -> stages 1-4 -> evaluation after each stage on held-out
# records -> runs/pipeline-tiny/report/report.md (docs/pipeline.md). A rerun does nothing.
pipeline: $(STAMP)
	$(BIN)/fleming pipeline --config megatron_fleming/configs/pipelines/tiny.yaml

test: $(TEST_STAMP)
	$(BIN)/pytest -q

test-slow: $(TEST_STAMP)
	$(BIN)/pytest -q -m slow

bench: $(STAMP)
	for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

# Mutation testing of the core modules (scripts/mutation_targets.toml): not in CI, minutes per
# module on two cores; scores and survivors land in build/mutation/ (see docs/mutation.md).
mutation: $(TEST_STAMP)
	$(BIN)/pip install --quiet -e '.[test,mutation]'
	nice -n 15 $(BIN)/python scripts/mutation.py

clean:
	rm -rf shards/*/ build *.egg-info
