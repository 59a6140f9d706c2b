#!/usr/bin/env bash
# Vendor @annotorious/annotorious and konva from the npm registry (see README.md here).
set -euo pipefail
annotorious="${1:?annotorious version, e.g. 3.8.10}"
konva="${2:?konva version, e.g. 10.9.1}"
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
npm init -y >/dev/null
npm install --omit=dev --no-audit --no-fund "@annotorious/annotorious@$annotorious" "konva@$konva" >/dev/null
modules="$work/node_modules"
old_annotorious=("$here"/annotorious-*) old_konva=("$here"/konva-*)
a="$here/annotorious-$annotorious" k="$here/konva-$konva"
mkdir -p "$a/licenses" "$k"
cp "$modules/@annotorious/annotorious/dist/annotorious.js" "$modules/@annotorious/annotorious/dist/annotorious.css" "$a/"
cp "$modules/konva/konva.min.js" "$modules/konva/LICENSE" "$k/"
if [ "${old_annotorious[0]}" != "$a" ]; then  # the package ships no LICENSE: BSD-3-Clause, as its package.json says
  cp "${old_annotorious[0]}/LICENSE" "$a/LICENSE"
  cp "${old_annotorious[0]}"/licenses/svelte-*.LICENSE "$a/licenses/"  # compiled in (a dev dependency)
fi
for package in "$modules"/*; do
  name="$(basename "$package")"
  if [ "$name" = konva ] || [ "$name" = "@annotorious" ] || [ "$name" = ".package-lock.json" ]; then
    continue
  fi
  licence="$(find "$package" -maxdepth 1 -iname 'licen[cs]e*' | head -n 1)"
  version="$(node -p "require('$package/package.json').version")"
  if [ -n "$licence" ]; then
    cp "$licence" "$a/licenses/$name-$version.LICENSE"
  else
    echo "warning: $name $version has no licence file: add its licence by hand" >&2
  fi
done
for old in "${old_annotorious[@]}" "${old_konva[@]}"; do
  if [ "$old" != "$a" ] && [ "$old" != "$k" ]; then
    rm -rf "$old"
  fi
done
echo "vendored annotorious $annotorious and konva $konva; now update ../index.html and README.md"
