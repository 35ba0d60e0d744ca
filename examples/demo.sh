#!/usr/bin/env bash
# The README's demo: make a synthetic coloured body, compress it losslessly and lossily with the octree
# codec, decode, and measure what came back.
set -euo pipefail
OUT=${1:-demo-out}
IM=${IMCODEC:-.venv/bin/imcodec}
mkdir -p "$OUT"
"$IM" synth --shape body --bits 10 --color --seed 1 -o "$OUT/body.ply"
"$IM" info "$OUT/body.ply"
"$IM" encode --codec octree "$OUT/body.ply" -o "$OUT/body_lossless.imc" --attr-qp 22 --json
"$IM" decode "$OUT/body_lossless.imc" -o "$OUT/body_lossless.ply" --json
"$IM" metrics "$OUT/body.ply" "$OUT/body_lossless.ply" --bits 10 --color
"$IM" encode --codec octree "$OUT/body.ply" -o "$OUT/body_half.imc" --scale 0.5 --json
"$IM" decode "$OUT/body_half.imc" -o "$OUT/body_half.ply"
"$IM" metrics "$OUT/body.ply" "$OUT/body_half.ply" --bits 10
"$IM" info "$OUT/body_half.imc"
