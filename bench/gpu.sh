#!/usr/bin/env bash
# The quick benchmark on a CUDA machine, in under 5 minutes; installs nothing.
#
#   bash bench/gpu.sh
#
# Our side runs with bf16 autocast and channels_last (the reference side stays fp32, default
# memory format: the official recipe). If the 290 s limit is hit, run.py still prints the rows it
# finished (marked INCOMPLETE). The table goes to stdout, progress lines to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
python - <<'EOF'
import torch
assert torch.cuda.is_available(), "bench/gpu.sh: no CUDA device visible"
print(f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}")
EOF
nvidia-smi --query-gpu=name,memory.used,memory.total,utilization.gpu --format=csv,noheader || true
timeout 290 python bench/run.py --quick --device cuda --amp bf16 --channels-last
