#!/usr/bin/env bash
# The one-command GPU check, within 10 minutes on one GPU (an H200 here); installs nothing.
#
#   bash bench/gpu.sh [--data path/to/cifar10-jpg.tar.gz] [--epochs 200] [--device cuda|cpu]
#
# 1. The full BBN CIFAR-10-LT IR100 recipe (bench/gpu_recipe.py: 200 epochs, batch 128, lr 0.1,
#    Nesterov, wd 2e-4, warm-up 5, lr x0.01 at 120/160, T_max 200, pad-4 crop + flip, CIFAR mean/std)
#    on the in-memory input path with bf16 autocast and channels_last: prints the time, the top-1 on the
#    10,000 test images against the paper's 79.82 %, the peak GPU memory, and the ratio against the
#    official two-pass step measured on the same GPU. Capped at 300 s.
# 2. The bench rows on CUDA (train steps and the in-memory input rows), bf16 + channels_last on our
#    side, then the ResNet-32 rows again with torch.compile. Capped at 120 s and 60 s; run.py still
#    prints the rows it finished (marked INCOMPLETE).
# 3. The iNaturalist workload's input (bench/gpu_input.py): BBN's ResNet-50 step at 224 px, bf16, fed
#    by the DataLoader from prepared synthetic photos (num_workers auto) against the same step on
#    batches already on the GPU: the share of time the GPU waits for images. Capped at 100 s.
#
# --data: the CIFAR-10 JPEG tarball (cifar10/{train,test}/<class>/*.jpg). ../shared is not on a
# device machine: copy the tarball into an ignored folder that travels with the tree and pass it
# here. Without it the images are synthetic (the top-1 then means nothing; the script says so).
# --device cpu: a dry run on tiny data (1 epoch unless --epochs, 40 head-class images, one
# repetition per bench row): checks that every step runs, in about a minute; its figures mean nothing.
# Tables and results go to stdout, progress to stderr; $BBN_GPU_JSON (default $OUT or /tmp: bbn-gpu-results.json) gets the recipe's summary.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=../shared/data/cifar10-jpg.tar.gz
EPOCHS=""
DEVICE=cuda
while [[ $# -gt 0 ]]; do
  case "$1" in
    --data) DATA=$2; shift 2 ;;
    --epochs) EPOCHS=$2; shift 2 ;;
    --device) DEVICE=$2; shift 2 ;;
    *) echo "bench/gpu.sh: unknown option $1 (--data, --epochs, --device)" >&2; exit 2 ;;
  esac
done
[[ -f "$DATA" ]] || echo "bench/gpu.sh: $DATA not found: synthetic images instead" >&2

if [[ "$DEVICE" == cpu ]]; then
  python bench/gpu_recipe.py --data "$DATA" --epochs "${EPOCHS:-1}" --device cpu --n-max 40 --batch 16 \
      --test-per-class 5 --official-steps 1 --json "${BBN_GPU_JSON:-${OUT:-/tmp}/bbn-gpu-results.json}"
  python bench/run.py --smoke --sections inmemory --data "$DATA"
  python bench/gpu_input.py --device cpu --amp off --images 12 --steps 1 --batch 2 --size 32 --classes 10
  exit 0
fi

python - <<'EOF'
import torch
assert torch.cuda.is_available(), "bench/gpu.sh: no CUDA device visible (use --device cpu for a dry run)"
print(f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}")
EOF
nvidia-smi --query-gpu=name,memory.used,memory.total,utilization.gpu --format=csv,noheader || true
timeout 300 python bench/gpu_recipe.py --data "$DATA" --epochs "${EPOCHS:-200}" --device cuda --amp bf16 \
    --channels-last --json "${BBN_GPU_JSON:-${OUT:-/tmp}/bbn-gpu-results.json}" || echo "gpu_recipe.py: exit $?"
timeout 120 python bench/run.py --quick --device cuda --amp bf16 --channels-last --sections train,inmemory \
    --data "$DATA" || echo "run.py: exit $?"
timeout 60 python bench/run.py --quick --device cuda --amp bf16 --channels-last --compile --sections train \
    --backbones resnet32 --data "$DATA" || echo "run.py --compile: exit $?"
timeout 100 python bench/gpu_input.py --device cuda --amp bf16 || echo "gpu_input.py: exit $?"
