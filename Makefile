# The two set-up commands: `make demo` (the whole pipeline on the demo catalogue) and `make test`.
# Both create .venv when missing and install the package into it.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# pip reads the machine's find-links, so this takes the local CPU build where one is
# provided; elsewhere pip picks the default build for the platform.
TORCH  ?= torch==2.13.0

# quiet, offline runs: no telemetry or analytics from MLflow, Prefect or DVC
export DO_NOT_TRACK=1
export MLFLOW_DISABLE_TELEMETRY=true
export PREFECT_SERVER_ANALYTICS_ENABLED=false
export DVC_NO_ANALYTICS=1
export PREFECT_LOGGING_LEVEL=WARNING
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=180

.PHONY: install test demo pretrain ablation generality retrain bench clean

# stages run `python -m ...`: make that the venv's python
export PATH := $(abspath $(BIN)):$(PATH)

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade uv
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/uv pip install -q --python $(BIN)/python -c constraints.txt -e ".[dev]"
	# tinysoundfont's playback extra (pyaudio) is not needed to render offline
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps tinysoundfont==0.3.7
	# the second General MIDI soundfont (FluidR3 Mono, MIT licence), drawn by demo.size=large
	test -f /usr/share/sounds/sf3/FluidR3Mono_GM.sf3 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fluidr3mono-gm-soundfont; } || echo "note: demo.size=large needs: apt-get install fluidr3mono-gm-soundfont"
	touch $@

test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

demo: install
	@start=$$(date +%s); \
	$(BIN)/dvc repro && $(BIN)/python -m stages.report && \
	echo "make demo finished in $$(( $$(date +%s) - start )) s"

# The pipeline on the large catalogue in its own workspace (pretrain/), then the final model
# exported to models/pretrained with its model card, scored on the demo's sets too.
pretrain: install
	ws=$$($(BIN)/python -m stages.pretrain setup) && cd $$ws && PYTHONPATH=$(CURDIR) $(abspath $(BIN))/dvc repro
	$(BIN)/dvc repro demo
	$(BIN)/python -m stages.pretrain export

# Table II on the demo catalogue: seven `dvc exp run`s (docs/results.md: "the ablation (Table II)"), then
# reports/ablation/table.md; ROWS=t2-full,t2-conformer picks rows
ablation: install
	$(BIN)/python -m coverhunter.mlops.ablation run $(if $(ROWS),--rows $(ROWS))

# The generality checks (docs/generality.md), in the soundfont the demo's models never heard:
# vocal polyphony of two corpus collections no catalogue draws from (demo.size=polyphonic), and
# folk tunes of none of the demo's works harmonised in four parts (demo.size=homophonic), each scored
# with `make demo`'s models (the fine one also as trained, before its blend with the checkpoint, when
# it was blended) and the shipped checkpoint beside the baselines:
# reports/generality/<preset>/<model>/metrics.json
GENERALITY_MODELS = fine:artifacts/models/fine/model.pt fine_as_trained:artifacts/models/fine/as_trained.pt \
	coarse:artifacts/models/coarse/model.pt pretrained:models/pretrained/model.pt
generality: install
	for s in polyphonic homophonic; do \
	  $(BIN)/python -m coverhunter.demo --size $$s || exit 1; \
	  for nm in $(GENERALITY_MODELS); do name=$${nm%%:*}; path=$${nm#*:}; \
	    [ -f $$path ] || continue; \
	    $(BIN)/python -m coverhunter score -q --manifest data/demo_$$s/manifest.csv \
	      --model $$path --out reports/generality/$$s/$$name || exit 1; done; done

# the scheduled-retraining flow once, now (README: "Scheduled retraining")
retrain: install
	$(BIN)/python -m flows.retrain

bench: install
	$(BIN)/python benchmarks/bench_features.py
	$(BIN)/python benchmarks/bench_model.py
	$(BIN)/python benchmarks/bench_align.py
	$(BIN)/python benchmarks/bench_augment.py
	$(BIN)/python benchmarks/bench_train_tricks.py

clean:
	rm -rf $(VENV) .pytest_cache
