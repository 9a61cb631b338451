#!/usr/bin/env bash
# The whole LogicAL job on two categories of the built-in toybox data (tray, bag; the toybox also holds bottle,
# left out to keep the demo short), small enough for a laptop CPU.
# Each step reuses what an earlier run already made, so a rerun is quick.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
DATA=data
OUT=runs/demo
SIZE=128
N=${DEMO_N:-1000}                 # samples per category
STEPS=${DEMO_STEPS:-320}          # training steps per category
GEN_EPOCHS=${DEMO_GEN_EPOCHS:-20} # generator epochs per category
CATEGORIES="tray bag"
mkdir -p "$OUT"
step() {  # wall clock so far, and the CPU time (user, system) of all commands so far
  times > "$OUT/.cpu"  # in this shell: its second line is the children's user and system time
  printf '\n== [%dm%02ds, cpu %s] %s\n' $((SECONDS / 60)) $((SECONDS % 60)) "$(tail -1 "$OUT/.cpu")" "$*"
}

step "1/6 toybox: materialise the demo dataset (categories: $CATEGORIES) and check it"
$BIN/logical-synth scan --dataset toybox

step "2/6 fit the tiny edge-to-image generator on each category's normals"
for CAT in $CATEGORIES; do
  GEN=$DATA/toybox/$CAT/generator.pt
  # a generator fitted on another edge extractor version or size cannot render today's edge maps: refit it
  if [ -f "$GEN" ] && ! $BIN/python -c 'import sys; from synth.features.edges import get_extractor
from synth.render.generator import load_generator
load_generator(sys.argv[1], edges=get_extractor("classic").identity, size=int(sys.argv[2]), device="cpu")' \
      "$GEN" $SIZE 2>/dev/null; then
    echo "$GEN was fitted on other edges or at another size: refitting it"
    rm -f "$GEN" "${GEN%.pt}.train.pt"
  fi
  if [ -f "$GEN" ]; then echo "reusing $GEN"; else
    $BIN/logical-synth fit-generator --dataset toybox --category "$CAT" --preset tiny --size $SIZE \
      --epochs "$GEN_EPOCHS" --out "$GEN"
  fi
done

step "3/6 build $N samples per category with the default synthesizer (categories: $CATEGORIES)"
# shellcheck disable=SC2046  # one --category option per word of $CATEGORIES
$BIN/logical-synth build --dataset toybox $(printf -- '--category %s ' $CATEGORIES) --n "$N" --size $SIZE \
  --shard-size 500 --workers 2 --out "$DATA"

step "4/6 contact sheet of edits (tray)"
$BIN/logical-synth show --dataset toybox --category tray --n 12 --size $SIZE --out "$OUT/sheet.png"

step "5/6 train one small localization network per category of $DATA/toybox"
$BIN/logical-train --shards "$DATA/toybox" --out "$OUT/models" --preset small --size $SIZE --steps "$STEPS" \
  --workers 1

step "6/6 evaluate every trained category on its toybox test split (bottle: listed as not trained)"
$BIN/logical-train eval --checkpoint "$OUT/models" --dataset toybox --out "$OUT/eval"

step "done"
cat <<TXT

Pictures:
  generator samples : $DATA/toybox/{tray,bag}/generator_samples.png
  contact sheet     : $OUT/sheet.png
  loss curves       : $OUT/models/toybox/{tray,bag}/loss.png
  summary           : $OUT/eval/summary.png (per category: scores, best/worst heatmaps)
  heatmaps          : $OUT/eval/{tray,bag}/heatmaps/
  metrics           : $OUT/eval/metrics.md
TXT
