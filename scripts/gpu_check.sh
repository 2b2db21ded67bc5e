#!/usr/bin/env bash
# The GPU checks of docs/benchmarks.md in one go on one CUDA device (about 5 minutes on an H100;
# `cfnet bench gpu --help` says what runs). Writes OUT/gpu_check.json and OUT/gpu_check.md.
#   scripts/gpu_check.sh [OUT] [extra cfnet bench gpu options]
# Dry run of the same code path on the CPU (what CI does): scripts/gpu_check.sh /tmp/x --device cpu --dry-run
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-results/gpu-check}"
shift || true
python="${PYTHON:-python}"
[ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ] && python=.venv/bin/python
"$python" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
exec timeout 590 "$python" -m cfnet bench gpu --out "$out" "$@"
