#!/usr/bin/env bash
# Wheels for benchmarks/gpu_check.sh, into .whl/ (ignored by git; ~35 MB, carried to the GPU
# machine, which has no network). Run here, from the repository root, where PyPI is reachable:
#   bash benchmarks/gpu_wheels.sh
set -euo pipefail
mkdir -p .whl
PY=${PYTHON:-.venv/bin/python}
# the GPU machine's Python is 3.12 on x86-64 Linux; pure-Python wheels match any platform
target=(--python-version 3.12 --implementation cp --only-binary=:all: --no-deps
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64
        --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
grep -v -e '^#' -e '^deepspeed' -e '^$' benchmarks/gpu_requirements.txt > .whl/binary.txt
"$PY" -m pip download -q "${target[@]}" -d .whl -r .whl/binary.txt
# DeepSpeed is published as source only. Built without its compiled ops (DS_BUILD_OPS=0), the
# wheel is pure Python: ZeRO-2 with a PyTorch optimizer needs none of them.
if ! ls .whl/deepspeed-0.19.8-*.whl > /dev/null 2>&1; then
  DS_BUILD_OPS=0 "$PY" -m pip wheel -q --no-deps --no-build-isolation deepspeed==0.19.8 -w .whl
fi
rm .whl/binary.txt
ls .whl | wc -l
du -sh .whl
