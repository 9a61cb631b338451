#!/usr/bin/env bash
# The whole LogicAL job on the built-in toybox data, small enough for a laptop CPU.
# Each step reuses what an earlier run already made, so a rerun is quick.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
DATA=data
OUT=runs/demo
SIZE=128
N=${DEMO_N:-2000}
STEPS=${DEMO_STEPS:-700}
mkdir -p "$OUT"
step() { printf '\n== %s\n' "$*"; }

step "1/6 toybox: materialise the demo dataset and check it"
$BIN/logical-synth scan --dataset toybox

step "2/6 fit the tiny edge-to-image generator on toybox normals"
GEN=$DATA/toybox/tray/generator.pt
# a generator fitted on another edge extractor version or size cannot render today's edge maps: refit it
if [ -f "$GEN" ] && ! $BIN/python -c 'import sys; from synth.edges import get_extractor
from synth.render.generator import load_generator
load_generator(sys.argv[1], edges=get_extractor("classic").identity, size=int(sys.argv[2]), device="cpu")' \
    "$GEN" $SIZE 2>/dev/null; then
  echo "$GEN was fitted on other edges or at another size: refitting it"
  rm -f "$GEN" "${GEN%.pt}.train.pt"
fi
if [ -f "$GEN" ]; then echo "reusing $GEN"; else
  $BIN/logical-synth fit-generator --dataset toybox --category tray --preset tiny --size $SIZE --out "$GEN"
fi

step "3/6 build $N LogicAL samples"
$BIN/logical-synth build --dataset toybox --category tray --n "$N" --size $SIZE --shard-size 500 --workers 2 --out "$DATA"

step "4/6 contact sheet of edits"
$BIN/logical-synth show --dataset toybox --category tray --n 12 --size $SIZE --out "$OUT/sheet.png"

step "5/6 train the small localization network"
$BIN/logical-train --shards "$DATA/toybox/tray" --out "$OUT/model" --preset small --size $SIZE --steps "$STEPS" --workers 1 --resume

step "6/6 evaluate on the toybox test split"
$BIN/logical-train eval --checkpoint "$OUT/model/model.pt" --dataset toybox --category tray --out "$OUT/eval"

cat <<TXT

Pictures:
  generator samples : $DATA/toybox/tray/generator_samples.png
  contact sheet     : $OUT/sheet.png
  loss curves       : $OUT/model/loss.png
  heatmaps          : $OUT/eval/heatmaps/
  metrics           : $OUT/eval/metrics.md
TXT
