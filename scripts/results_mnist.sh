#!/usr/bin/env bash
# Reduced-budget comparison on dynamically binarized MNIST (CPU): the paper's SeRe-VAE, the
# guide corrected by `hiervae check`, and the DLGM baseline, at equal epochs and seed.
#   bash scripts/results_mnist.sh                      # the budget reported in docs/results.md
#   EPOCHS=4000 WARMUP="--set train.kl_warmup.levels=10 --set train.kl_warmup.epochs=1024" \
#     LIMIT=10000 bash scripts/results_mnist.sh        # the paper's full budget (GPU advised)
# Then: python scripts/results_doc.py   (writes docs/results.md from the run directories)
set -euo pipefail
PY=${PY:-python}
DATA=${DATA:-../shared/data}
OUT=${OUT:-runs/results}
EPOCHS=${EPOCHS:-6}
WARMUP=${WARMUP:---set train.kl_warmup.levels=2 --set train.kl_warmup.epochs=4}
LIMIT=${LIMIT:-300}
IW=${IW:-1000}
THREADS=${THREADS:-1}  # one thread: robust on a shared machine, where 2 threads contend badly
SPECS=${SPECS:-"sere_mlp_mnist sere_mlp_mnist_faithful dlgm_mnist"}
for name in $SPECS; do
  echo "== $name: fit $EPOCHS epochs"
  "$PY" -m hiervae fit "specs/$name.yaml" --out "$OUT/$name" --data-dir "$DATA" --no-download \
    --epochs "$EPOCHS" $WARMUP --set train.seed=0 --threads "$THREADS" -q
done
for name in $SPECS; do
  echo "== $name: eval, $IW importance samples, first $LIMIT test images"
  "$PY" -m hiervae eval "$OUT/$name" --data-dir "$DATA" --no-download --iw "$IW" --limit "$LIMIT" \
    --split test --threads "$THREADS"
done
