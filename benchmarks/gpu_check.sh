#!/usr/bin/env bash
# GPU checks of docs/results/llm-speed.md, for a machine with one GPU (not run where none is).
#   OUT=/some/dir bash benchmarks/gpu_check.sh        # from the repository root
# Writes to $OUT:
#   vs_trl_gpu_b16.json, vs_trl_gpu_b64.json   benchmarks/vs_trl.py --profile gpu (0.49B Llama,
#       152k vocabulary, max length 1024, bf16): tokens/s, peak GPU memory, MFU, ratios to TRL
#   largest_batch.json   the largest records-per-step that fits, per trainer (doubling from 16)
#   fsdp_1proc.json, zero2_1proc.json   one-process PMPO runs through the committed accelerate
#       configs (recipes/accelerate/fsdp.yaml, deepspeed_zero2.yaml), exit codes and metrics
set -u -o pipefail
OUT=${OUT:?set OUT to a directory}
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 ANYFEEDBACK_PROGRESS=0 PYTHONPATH=$PWD/src
PY=${PYTHON:-python}
nvidia-smi --query-gpu=name,memory.total --format=csv > "$OUT/gpu.txt" 2>&1

# 1. the benchmark at 16 and 64 records per step (each run in its own process)
for b in 16 64; do
  timeout 1500 $PY benchmarks/vs_trl.py --profile gpu --reps 1 --steps 12 --batch "$b" \
    --out "$OUT/vs_trl_gpu_b$b.json" > "$OUT/vs_trl_gpu_b$b.log" 2>&1
  echo "vs_trl b$b exit $?" >> "$OUT/status.txt"
done

# 2. the largest records per step that fits, per trainer: 16, 32, 64, … until a run fails
echo "{" > "$OUT/largest_batch.json"
for run in pmpo kto dpo trl-kto trl-dpo; do
  fits=0
  for b in 16 32 64 128 256; do
    if timeout 600 $PY benchmarks/vs_trl.py --profile gpu --reps 1 --steps 5 --batch "$b" \
        --runs "$run" --out "$OUT/fit_${run}_b$b.json" > "$OUT/fit_${run}_b$b.log" 2>&1; then
      fits=$b
    else
      break
    fi
  done
  echo "  \"$run\": $fits," >> "$OUT/largest_batch.json"
done
echo "  \"note\": \"largest records per step of 16·2^k that ran 5 steps at max length 1024\"" \
  >> "$OUT/largest_batch.json"
echo "}" >> "$OUT/largest_batch.json"

# 3. one-process FSDP2 and DeepSpeed ZeRO-2 through the committed accelerate configs
MODEL=$PWD/results/bench/.work-gpu/model
DATA=$(ls "$PWD"/results/bench/.work-gpu/unpaired-*.jsonl | head -1)
for name in fsdp deepspeed_zero2; do
  timeout 900 accelerate launch --config_file "recipes/accelerate/$name.yaml" --num_processes 1 \
    -m anyfeedback.cli train --model "$MODEL" --data "$DATA" --out "$OUT/run-$name" \
    --method pmpo --bf16 --batch-size 16 --max-length 1024 --max-steps 10 --save-steps 0 \
    --no-progress > "$OUT/$name.log" 2>&1
  code=$?
  tail -1 "$OUT/run-$name/metrics.jsonl" 2>/dev/null > "$OUT/${name}_last_metrics.json"
  echo "{\"config\": \"recipes/accelerate/$name.yaml\", \"processes\": 1, \"exit\": $code}" \
    > "$OUT/${name}_1proc.json"
done
