#!/usr/bin/env bash
# Every GPU check in one call, for a lent GPU machine (see docs/engine.md, "GPU").
#
# Prepare here (the GPU machine has no network; dask is not installed there):
#   pip download --no-deps --only-binary=:all: -d .whl dask partd locket
# (import napari_colorize needs neither zarr nor ome-zarr; the zarr test files do:
# add zarr, numcodecs and ome-zarr to that download if the machine lacks them).
# then run through the device tool with carry [".whl"] and a timeout of about 500 s:
#   bash benchmarks/gpu_check.sh
# It prints the card, runs the CUDA tests, then the engine's GPU benchmark
# (compact and vgg16, fp32 and bf16, pipeline vs model-only MP/s, GPU utilisation).
set -u
cd "$(dirname "$0")/.."
if [ -d .whl ]; then
    python -m pip install -q --no-deps --target /tmp/site .whl/*.whl
fi
export PYTHONPATH="$PWD/src:/tmp/site:${PYTHONPATH:-}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
echo "== CUDA tests"
timeout 240 python -m pytest -q -p no:cacheprovider -m cuda tests 2>&1 | tail -5
timeout 240 python -m pytest -q -p no:cacheprovider tests/test_engine.py tests/test_inference.py tests/test_context.py 2>&1 | tail -3
echo "== engine on the GPU"
timeout 300 python benchmarks/bench_engine.py gpu
echo "== engine without the network (the ceiling for feeding the GPU)"
timeout 120 python benchmarks/bench_engine.py overhead
