#!/usr/bin/env bash
# The GPU checks of docs/results/llm-speed.md, sized for a short device lease (3 calls of ~6 min).
# Here, once (PyPI reachable):   bash benchmarks/gpu_wheels.sh      -> .whl/ (~35 MB, ignored)
# On the GPU machine, from the repository root, each a device call carrying .whl, issued one right
# after the other so the machine stays warm (the wheels, built model and data are then reused):
#   OUT=... bash benchmarks/gpu_check.sh speed     # vs TRL at 16 and 64 records per step
#   OUT=... bash benchmarks/gpu_check.sh scale     # largest batch, ZeRO-2/FSDP, padding-free
#   OUT=... bash benchmarks/gpu_check.sh extra     # our KTO/DPO vs TRL on the GPU (optional)
# A dry run on CPU (tiny profile, to check the script itself): CHECK_ARGS="--profile cpu
# --sizes 8,16 --largest 32 --steps 5" with a cp311 WHEELS dir for a Python 3.11 base.
# BUDGET (seconds, default 330) bounds each part; the device call's timeout should leave ~60 s more
# for the first call's wheel install and model build. What each part writes: benchmarks/gpu_check.py.
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
"$PY" benchmarks/gpu_check.py "$PART" --budget "${BUDGET:-330}" --out "$OUT" ${CHECK_ARGS:-}
