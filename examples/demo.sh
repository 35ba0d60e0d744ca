#!/usr/bin/env bash
# The README's demo: make a synthetic coloured body, describe it, measure a degraded copy.
set -euo pipefail
OUT=${1:-demo-out}
IM=${IMCODEC:-.venv/bin/imcodec}
mkdir -p "$OUT"
"$IM" synth --shape body --bits 10 --color --seed 1 -o "$OUT/body.ply"
"$IM" info "$OUT/body.ply"
"$IM" convert "$OUT/body.ply" "$OUT/body_ascii.ply" --ascii
"$IM" metrics "$OUT/body.ply" "$OUT/body_ascii.ply" --bits 10 --color
