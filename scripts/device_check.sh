#!/usr/bin/env bash
# One prepared GPU session (a lent H100/H200), in one go: correctness of the prior and the search on CUDA,
# then the search benchmark's table (1024- and 256-px generators, 32- and 64-px targets: warm and cold
# face-frames/s, fraction meeting the bound, ms per face-step, fraction of time in kernels, syncs and ops
# per iteration), then the device record (`scripts/device_bench.py`: search, learned upscaling, film
# cleaning, compose; one table and $OUT/gpu-latest.json, to be committed as benchmarks/gpu-latest.json),
# then the search with the step compiled (CUDA graphs). Installs nothing: the device image has torch,
# numpy and OpenCV; spandrel and its small pure-Python dependencies travel in the ignored device-deps/
# folder, made here by `make device-deps` and carried (`run(carry=["device-deps"])`). No Ray, PyAV or
# ffmpeg is needed. Each step has its own time limit so a slow step cannot eat the others; at most
# 8 minutes in all. Results go to $OUT (or ./device-out).
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-device-out}
mkdir -p "$OUT"
PY=${PY:-python3}
export PYTHONPATH="$PWD/device-deps:$PWD${PYTHONPATH:+:$PYTHONPATH}"
export REEL_COMMIT=${REEL_COMMIT:-$(cat device-deps/COMMIT 2>/dev/null || git rev-parse HEAD 2>/dev/null)}
step() {  # step NAME SECONDS CMD...
  local name=$1 secs=$2; shift 2
  echo "=== $name (limit ${secs}s)"
  local t0=$SECONDS
  timeout "$secs" "$@" 2>&1 | tee "$OUT/$name.txt"
  echo "=== $name: exit ${PIPESTATUS[0]} after $((SECONDS - t0))s"
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
$PY -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
step tests 80 env REEL_TEST_DEVICE=cuda $PY -m pytest -q -m "not slow" -p no:cacheprovider \
  tests/prior/test_stylegan2.py tests/search/test_search.py tests/search/test_loop.py tests/search/test_optim.py
# the table: eager, bf16, truncated synthesis, batch 32, stop checks every 4 iterations, compaction
step bench_search 130 $PY scripts/bench_search.py --device cuda --generators 1024,256 --targets 64 \
  --batch 32 --frames 4 --settings trunc-bf16
# the record (32-px targets): the figures of benchmarks/gpu-latest.json, one table
step device_bench 150 $PY scripts/device_bench.py --device cuda --out "$OUT/gpu-latest.json"
# the step under torch.compile with CUDA graphs: fixed shapes (no compaction), so one graph per phase
step bench_search_compiled 110 $PY scripts/bench_search.py --device cuda --generators 1024 --targets 32 \
  --batch 32 --frames 4 --settings trunc-bf16 --compile reduce-overhead --no-compact
