#!/bin/bash
# Runs on the device machine: installs the carried pydantic wheels, then the benchmarks.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:src RECUNLEARN_ML100K=.gpu/ml-100k RECUNLEARN_PROGRESS=0 PYTHONUNBUFFERED=1
rc() { python3 -c "import sys; from recunlearn.cli import main; sys.argv[0]='recunlearn'; main()" "$@"; }
lscpu | grep -E "Model name" ; nvidia-smi --query-gpu=name --format=csv,noheader
case "$1" in
  ml100k)
    OMP_NUM_THREADS=1 RECUNLEARN_DEVICE=cpu rc bench ifru -m retrain -m if -m scif -m finetune -m neggrad -m ifru --out $OUT/ml100k_cpu.json
    RECUNLEARN_DEVICE=cuda rc bench ifru -m retrain -m if -m scif -m finetune -m neggrad -m ifru --out $OUT/ml100k_cuda.json ;;
  scaling)
    RECUNLEARN_DEVICE=cuda rc bench ifru-scaling "${@:2}" --out $OUT/scaling_cuda.json ;;
esac
case "$1" in
  seeds)
    RECUNLEARN_DEVICE=cuda rc bench ifru -m retrain -m if -m scif -m ifru --seed 1 --seed 2 --fraction 0.01 --fraction 0.02 --out $OUT/ml100k_cuda_seeds.json ;;
esac
