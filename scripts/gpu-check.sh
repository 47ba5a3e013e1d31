#!/usr/bin/env bash
# The GPU check (issue 14) from the bundle scripts/gpu-bundle.sh makes: needs
# no Node.js and no network. Unpacks .gpu-check/blyd-gpu.tar.xz (or $BLYD_GPU_BUNDLE)
# to a temp folder, puts its Vulkan loader on the library path, points Vulkan
# at the NVIDIA ICD when the machine has one, and runs the check:
#   scripts/gpu-check.sh            # the full check: 36 layers (a GPU)
#   scripts/gpu-check.sh --quick    # 1 layer, short runs (a software adapter)
# Other options (--layers, --prefill, --steps, --diff-prefill, --bandwidth-gbs)
# go to scripts/gpu-check/check.ts. On an H200 --bandwidth-gbs 4800 (its
# datasheet's HBM3e figure) is added unless given.
set -euo pipefail
cd "$(dirname "$0")/.."
bundle=${BLYD_GPU_BUNDLE:-.gpu-check/blyd-gpu.tar.xz}
if [ ! -f "$bundle" ]; then
  echo "no bundle at $bundle: run scripts/gpu-bundle.sh first (on a machine with Node and network)" >&2
  exit 1
fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
if command -v xz >/dev/null 2>&1; then
  tar -xJf "$bundle" -C "$dir"
else
  python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$bundle" "$dir"
fi
export LD_LIBRARY_PATH="$dir/vk${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
if [ -z "${VK_DRIVER_FILES:-}" ] && [ -z "${VK_ICD_FILENAMES:-}" ]; then
  for icd in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /etc/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json; do
    if [ -f "$icd" ]; then
      export VK_DRIVER_FILES="$icd"
      break
    fi
  done
fi
extra=()
if command -v nvidia-smi >/dev/null 2>&1; then
  gpu=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -n 1 || true)
  echo "nvidia-smi: ${gpu:-none}"
  case "$gpu" in
    *H200*) [[ " $* " == *" --bandwidth-gbs "* ]] || extra=(--bandwidth-gbs 4800) ;;
  esac
fi
echo "vulkan driver files: ${VK_DRIVER_FILES:-${VK_ICD_FILENAMES:-system default}}"
"$dir/bin/node" "$dir/check.mjs" "$@" "${extra[@]}"
