#!/usr/bin/env bash
# One prepared GPU session (a lent H100/H200): correctness of the prior and the search on CUDA, then the
# generator-step and search benchmarks. Installs nothing; needs only torch, numpy, safetensors, PyYAML
# (the device image has them). Each step has its own time limit so a slow step cannot eat the others;
# results also go to $OUT (or ./device-out) for the record.
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-device-out}
mkdir -p "$OUT"
PY=${PY:-python3}
step() {  # step NAME SECONDS CMD...
  local name=$1 secs=$2; shift 2
  echo "=== $name (limit ${secs}s)"
  local t0=$SECONDS
  timeout "$secs" "$@" 2>&1 | tee "$OUT/$name.txt"
  echo "=== $name: exit ${PIPESTATUS[0]} after $((SECONDS - t0))s"
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
$PY -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
step tests 90 env REEL_TEST_DEVICE=cuda $PY -m pytest -q -m "not slow" -p no:cacheprovider \
  tests/prior/test_stylegan2.py tests/search
step bench_generator 140 $PY scripts/bench_generator.py --device cuda --resolutions 1024 256 \
  --batch 32 8 --dtype bfloat16 float32 --modconv scaled grouped scaled_fir --channels-last \
  --steps 10 --warmup 3 --no-flops
step bench_search 230 $PY scripts/bench_search.py --device cuda --resolution 1024 --batch 32 --frames 4 \
  --settings trunc-bf16,trunc-fp32,full-bf16
step bench_generator_compiled 90 $PY scripts/bench_generator.py --device cuda --resolutions 1024 \
  --batch 32 --dtype bfloat16 --modconv scaled --channels-last --compile --steps 10 --warmup 3 --no-flops
