#!/usr/bin/env bash
# The GPU checks of docs/results/llm-speed.md, sized for one 15-minute device lease: two calls of
# ~5-6 min, issued one right after the other so the machine stays warm (the installed wheels, the
# built model and data, and what `speed` found are then reused by `scale`).
# Here, once (PyPI reachable):   bash benchmarks/gpu_wheels.sh      -> .whl/ (~35 MB, ignored)
# On the GPU machine, from the repository root, each a device call carrying .whl:
#   OUT=... bash benchmarks/gpu_check.sh speed   # timeout_s ~400: install, model build, 290 s
#   BUDGET=... OUT=... bash benchmarks/gpu_check.sh scale   # BUDGET = status's budget_left_s
#                                                  # minus ~70 s; timeout_s BUDGET + 30
#   OUT=... bash benchmarks/gpu_check.sh extra     # our KTO/DPO vs TRL, only if time is left
# BUDGET (seconds, default 290) bounds each part's runs; every finished run is written at once, so
# a call cut off by its limit still returns what finished. What each part writes: gpu_check.py.
# A dry run on CPU (tiny profile, to check this script itself): DS_ACCELERATOR=cpu CHECK_ARGS=
# "--profile cpu --sizes 8,16 --largest 32,64 --steps 5", with a cp311 WHEELS dir on Python 3.11.
set -u -o pipefail
OUT=${OUT:?set OUT to a directory}
PART=${1:?speed, scale or extra}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
SITE=${SITE:-/tmp/anyfeedback-site}
if [ ! -f "$SITE/.installed" ]; then  # the image lacks TRL, datasets, Liger, DeepSpeed: see .whl
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$SITE" "${WHEELS:-.whl}"/*.whl > "$OUT/setup_$PART.log" 2>&1 \
    || { echo "wheel install failed:"; tail -5 "$OUT/setup_$PART.log"; exit 1; }
  touch "$SITE/.installed"
fi
export PYTHONPATH=$SITE:$PWD/src HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 ANYFEEDBACK_PROGRESS=0
export DS_ACCELERATOR=${DS_ACCELERATOR:-cuda} PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/nvidia_smi_$PART.txt" 2>&1
"$PY" -c "import transformers, trl, datasets, accelerate, peft, anyfeedback.cli" \
  || { echo "imports failed (see above)"; exit 1; }
"$PY" benchmarks/gpu_check.py "$PART" --budget "${BUDGET:-290}" --out "$OUT" ${CHECK_ARGS:-}
