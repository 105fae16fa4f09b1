#!/usr/bin/env bash
# The seed's comparison on long-tailed CIFAR-10 (imbalance ratio 100) at a reduced CPU budget:
# BBN vs plain CE vs BBN with alpha fixed at 0 (re-balancing branch only) and at 1 (conventional only).
# Queues four DVC experiments, runs them one after another, then writes reports/cifar10_lt_study/.
#
#   bash bench/cifar_lt_study.sh [path/to/cifar10-jpg.tar.gz or cifar-10-python.tar.gz] [epochs]
#
# Budget: 16 px inputs, EPOCHS epochs (default 6), batch 128: 40-50 minutes on 2 CPU cores.
# Shot groups for CIFAR-10-LT (5000 ... 50 images): many > 1500 (3 classes), medium 200-1500 (4),
# few < 200 (3); the iNat thresholds (100 / 20) would leave "few" empty.
# The paper's budget is 32 px and 200 epochs; expect lower accuracies here, compare the ordering.
set -euo pipefail
SRC=$(realpath "${1:-../shared/data/cifar10-jpg.tar.gz}")
EPOCHS=${2:-6}
EXP=cifar10_lt_study
COMMON=(-S data.name=cifar10_lt -S "data.source=$SRC" -S data.imbalance_ratio=100 -S data.n_max=0
        -S stats.many_above=1500 -S stats.few_below=200
        -S split.val_fraction=0.1 -S train.image_size=16 -S train.crop_padding=2 -S train.hflip=true
        -S "train.epochs=$EPOCHS" -S train.batch_size=128 -S train.lr=0.1 -S train.warmup_epochs=1
        -S "train.lr_steps=[$((EPOCHS * 3 / 4)),$((EPOCHS * 11 / 12))]" -S "train.tmax=$EPOCHS"
        -S "tracking.experiment=$EXP")
dvc exp run --queue "${COMMON[@]}" -S train.method=bbn
dvc exp run --queue "${COMMON[@]}" -S train.method=ce
dvc exp run --queue "${COMMON[@]}" -S train.alpha.schedule=fixed -S train.alpha.value=0.0
dvc exp run --queue "${COMMON[@]}" -S train.alpha.schedule=fixed -S train.alpha.value=1.0
dvc queue start -j 1
until [[ ! $(dvc queue status) =~ Queued|Running ]]; do sleep 20; done
dvc queue status
bbn-report --experiment "$EXP" --group-by train.method train.alpha.schedule train.alpha.value \
    --metrics test_top1_error test_many_acc test_medium_acc test_few_acc test_macro_acc \
    --out "reports/$EXP"
