#!/usr/bin/env bash
# The main job on the embedded offline dataset (scikit-learn's 8x8 digits, no download):
# check every shipped spec, then check -> fit -> eval -> sample -> render the quickstart.
set -euo pipefail
PY=${1:-python}
OUT=${2:-out/demo}
RUN="$OUT/quickstart"
mkdir -p "$OUT"

echo "== 1. hiervae check: is each shipped guide faithful to the exact posterior's factorization?"
for spec in specs/*.yaml; do
  set +e
  "$PY" -m hiervae check "$spec" > "$OUT/$(basename "$spec" .yaml).check.txt"
  code=$?
  set -e
  [ $code -le 1 ] || { echo "check failed on $spec (exit $code)"; exit $code; }
  head -n 1 "$OUT/$(basename "$spec" .yaml).check.txt"
done

echo
echo "== 2. hiervae fit specs/quickstart.yaml (3-layer SeRe-VAE, embedded digits, ~1 minute on 2 CPU cores)"
rm -rf "$RUN"
"$PY" -m hiervae fit specs/quickstart.yaml --out "$RUN" --threads 1

echo
echo "== 3. hiervae eval: importance-weighted log-likelihood on the test split"
"$PY" -m hiervae eval "$RUN" --split test

echo
echo "== 4. hiervae sample: samples and reconstructions"
"$PY" -m hiervae sample "$RUN"

echo
echo "== 5. hiervae render: generative and inference graphs side by side"
for spec in specs/*.yaml; do
  if command -v dot >/dev/null 2>&1; then
    "$PY" -m hiervae render "$spec" --check -o "$OUT/render" --format png >/dev/null
  else
    "$PY" -m hiervae render "$spec" --check -o "$OUT/render" --dot >/dev/null
  fi
done

echo
echo "outputs:"
echo "  check reports   : $OUT/*.check.txt"
echo "  trained run     : $RUN (spec.yaml, checkpoint.pt, metrics.jsonl, plots/, tensorboard/)"
echo "  evaluation      : $RUN/eval_test.json"
echo "  samples         : $RUN/samples.png, $RUN/reconstructions.png"
echo "  pictures        : $OUT/render/"
