#!/bin/sh
# Ship the photo_tiles run as saved_models/photo_tiles/VERSION, from the checkout's root:
#   sh experiments/photo_tiles/ship.sh /work/runs/photo_tiles 1
# A frozen copy of the run (its checkpoint may be rewritten while this runs) is evaluated
# (test L_1 and L_100 of the averaged weights, with the plots: learning curve, samples,
# reconstructions), exported, set beside PNG and WebP, and given its provenance file.
set -eu
RUN=$1
VERSION=$2
FROZEN=$(mktemp -d)/photo_tiles
OUT=experiments/photo_tiles/results/version_$VERSION
mkdir -p "$FROZEN" "$OUT"
cp "$RUN/config.json" "$RUN/history.csv" "$RUN/checkpoint.npz" "$FROZEN/"
lvae evaluate "$FROZEN" --samples 100 --output "$OUT/evaluation"
lvae export "$FROZEN" --name photo_tiles --base-dir saved_models --version "$VERSION"
python benchmarks/codecs.py --dataset photo_patches > "$OUT/codecs.txt"
cp "$FROZEN/history.csv" experiments/photo_tiles/results/history.csv
python experiments/photo_tiles/provenance.py "$FROZEN" "$OUT/evaluation" "$VERSION" "$OUT/codecs.txt"
rm -r "$(dirname "$FROZEN")"
