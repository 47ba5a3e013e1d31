#!/usr/bin/env bash
# Packs what the GPU check machine lacks (no Node.js, no network; at most
# 64 MiB travels) into .gpu-check/blyd-gpu.tar.xz (git-ignored):
#   bin/node          this checkout's Node binary (node_modules/node)
#   check.mjs         scripts/gpu-check/check.ts and the model code, bundled by esbuild
#   node_modules/     webgpu (index.js + linux-x64 dawn.node) and tfjs-backend-wasm's .wasm files
#   vk/               libvulkan1 and the GL dispatch libraries the NVIDIA Vulkan ICD loads
#                     (Debian's .debs, fetched with apt-get download and unpacked here)
# Then: scripts/gpu-check.sh [check options] unpacks it to a temp folder and runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
out=.gpu-check
stage=$out/stage
rm -rf "$stage"
mkdir -p "$stage/bin" "$stage/vk" "$out/debs"

node_bin=$(readlink -f node_modules/node/bin/node)
cp "$node_bin" "$stage/bin/node"

node_modules/.bin/esbuild scripts/gpu-check/check.ts --bundle --platform=node --format=esm --target=node22 \
  --external:webgpu --external:@tensorflow/tfjs-node-gpu --external:@tensorflow/tfjs-node \
  --banner:js="import { createRequire as __blydRequire } from 'node:module'; import { fileURLToPath as __blydPath } from 'node:url'; import { dirname as __blydDir } from 'node:path'; const require = __blydRequire(import.meta.url); const __filename = __blydPath(import.meta.url); const __dirname = __blydDir(__filename);" \
  --log-level=warning --outfile="$stage/check.mjs"

mkdir -p "$stage/node_modules/webgpu/dist/linux-x64" "$stage/node_modules/@tensorflow/tfjs-backend-wasm/dist"
cp node_modules/webgpu/index.js node_modules/webgpu/package.json "$stage/node_modules/webgpu/"
cp node_modules/webgpu/dist/linux-x64/* "$stage/node_modules/webgpu/dist/linux-x64/"
cp node_modules/@tensorflow/tfjs-backend-wasm/package.json "$stage/node_modules/@tensorflow/tfjs-backend-wasm/"
cp node_modules/@tensorflow/tfjs-backend-wasm/dist/*.wasm "$stage/node_modules/@tensorflow/tfjs-backend-wasm/dist/"

debs="libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2"
if ! ls "$out"/debs/libvulkan1_*.deb >/dev/null 2>&1; then
  (cd "$out/debs" && apt-get download $debs)
fi
x=$(mktemp -d)
for d in "$out"/debs/*.deb; do
  dpkg -x "$d" "$x"
done
cp -a "$x"/usr/lib/x86_64-linux-gnu/*.so* "$stage/vk/"
rm -rf "$x"

XZ_OPT="-9 -T2" tar -cJf "$out/blyd-gpu.tar.xz" -C "$stage" .
size=$(stat -c %s "$out/blyd-gpu.tar.xz")
echo "bundle: $out/blyd-gpu.tar.xz $((size / 1048576)) MiB ($(du -sh "$stage" | cut -f1) unpacked)"
rm -rf "$stage"
if [ "$size" -gt $((60 * 1048576)) ]; then
  echo "bundle is over 60 MiB: it will not travel (64 MiB with the working tree)" >&2
  exit 1
fi
