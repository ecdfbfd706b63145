#!/usr/bin/env bash
# GPU benchmarks of hiervae, for a person with a CUDA machine (none was lent when this was written).
#
#   benchmarks/gpu.sh DATA_DIR [OUT_DIR]
#
# DATA_DIR holds mnist/*-ubyte.gz (as /work/shared/data does); OUT_DIR (default out/gpu) gets one
# JSON per step and a log. Run from the repository root with the project's Python on PATH (or
# PYTHON=/path/to/python). Every step is independent: a failing step is logged and the rest still run.
#
#  1. train_speed   the paper's MLP SeRe-VAE (specs/sere_mlp_mnist.yaml, batch 256) on cuda,
#                   hiervae against the hand-written reference: steps/s and their ratio.
#  2. fit           one epoch of `hiervae fit --device cuda` on MNIST, fp32 and train.precision=bf16:
#                   end to end (data resident on the GPU, binarised there), seconds per epoch in
#                   OUT_DIR/fit_*/metrics.jsonl.
#  3. iw_speed      IW, 100 points x 1000 samples on cuda (+ the reference's IW, as a ratio), peak GPU
#                   memory per chunk size, and the whole 10000-image test set with the trained weights
#                   of step 2 (batches of 1000 points).
#  4. eval          `hiervae eval --device cuda` on the whole test split (IW 1000, ELBO, active units).
set -u
DATA=${1:?usage: benchmarks/gpu.sh DATA_DIR [OUT_DIR]}
OUT=${2:-out/gpu}
PY=${PYTHON:-python}
mkdir -p "$OUT"
LOG="$OUT/gpu.log"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

step() {  # step NAME COMMAND...: run, log, keep going
    local name=$1; shift
    echo "== $name: $*" | tee -a "$LOG"
    local t0=$SECONDS
    if "$@" 2>&1 | tee -a "$LOG"; then status=ok; else status=FAILED; fi
    echo "== $name: $status in $((SECONDS - t0)) s" | tee -a "$LOG"
}

"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.__version__, torch.cuda.get_device_name())" \
    | tee -a "$LOG" || exit 2
nvidia-smi >> "$LOG" 2>&1 || true

# 1. training speed, paper configuration (eager; add --compile for the compiled sides)
step train_speed "$PY" benchmarks/train_speed.py --device cuda --threads 4 --blocks 10 --steps 20 --warmup 10 \
    --quiet --json "$OUT/train_speed_cuda.json"

# 2. end-to-end fit on the GPU, fp32 and bf16 (one epoch each, fresh run directories)
for precision in fp32 bf16; do
    rm -rf "$OUT/fit_$precision"
    step "fit_$precision" "$PY" -m hiervae fit specs/sere_mlp_mnist.yaml --device cuda --epochs 1 --quiet \
        --data-dir "$DATA" --no-download --set train.precision=$precision --out "$OUT/fit_$precision"
done

# 3. IW speed and memory (random weights for the 100-point figure, comparable with the CPU table),
#    then the full test set with the trained fp32 weights
step iw_speed "$PY" benchmarks/iw_speed.py --device cuda --threads 4 --repeats 5 --chunks 100,250,500,1000 \
    --json "$OUT/iw_speed_cuda.json"
step iw_speed_bf16 "$PY" benchmarks/iw_speed.py --device cuda --threads 4 --repeats 5 --chunks "" --precision bf16 \
    --json "$OUT/iw_speed_cuda_bf16.json"
step iw_full_test "$PY" benchmarks/iw_speed.py --device cuda --threads 4 --repeats 1 --chunks "" --no-reference \
    --run "$OUT/fit_fp32" --data-dir "$DATA" --points 1000 --chunk 250 --full-test --full-batch 1000 \
    --json "$OUT/iw_full_test_cuda.json"

# 4. the eval command end to end (writes OUT/fit_fp32/eval_test.json)
step eval "$PY" -m hiervae eval "$OUT/fit_fp32" --device cuda --data-dir "$DATA" --no-download --json

echo "results: $OUT/*.json, $OUT/fit_*/metrics.jsonl, $OUT/fit_fp32/eval_test.json; log: $LOG"
