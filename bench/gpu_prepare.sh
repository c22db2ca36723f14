#!/usr/bin/env bash
# Prepare bench/gpu.py for the GPU machine (no package index there): the wheels steer and TRL need that
# its image lacks go into .whl, the Llama 3 tokenizer into .gpu; both ignored by git, both carried.
# Then, in one call on the machine (carry .whl and .gpu):
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD
#   python3 bench/gpu.py --tokenizer .gpu/llama3 --out $OUT/gpu.json
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .git/info
for path in /.whl/ /.gpu/; do grep -qxF "$path" .git/info/exclude 2>/dev/null || echo "$path" >> .git/info/exclude; done
rm -rf .whl && mkdir -p .whl .gpu
# versions as here; the machine's image has torch, transformers, peft, accelerate, pyarrow, pandas, xxhash, fsspec
for pkg in pydantic pydantic-core annotated-types typing-inspection datasets dill multiprocess trl transformers; do
  version=$(python -c "import importlib.metadata as m; print(m.version('$pkg'))")
  python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl "$pkg==$version"
done
rm -rf .gpu/llama3 && cp -r ../shared/assets/tokenizers/llama3 .gpu/llama3
du -sh .whl .gpu
