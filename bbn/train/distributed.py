"""Data-parallel training on PyTorch's own engine: torchrun + DistributedDataParallel.

One process per device (``train.nproc_per_node`` per node, ``train.nnodes`` nodes). torchrun sets
RANK / WORLD_SIZE / LOCAL_RANK; ``Dist.from_env`` joins the process group with ``nccl`` on GPUs and
``gloo`` on CPUs. Rank 0 alone writes files and talks to MLflow; epoch numbers are all-reduced. When
one rank raises, torchrun's agent stops the others and exits non-zero, showing that rank's error.
On GPUs the group has two backends: nccl for DDP's CUDA tensors, gloo for the CPU-side sums.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

from bbn.train.spec import LaunchSpec, TrainSpec


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @classmethod
    def from_env(cls, device: torch.device) -> tuple["Dist", torch.device]:
        """The process's place in the job (and its device); a single process without torchrun."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1:
            return cls(), device
        d = cls(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
        if device.type == "cuda":
            device = torch.device("cuda", d.local_rank)
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            # nccl for the CUDA tensors of DDP; gloo for the small CPU tensors of sums() and share()
            backend = "cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo"
            dist.init_process_group(backend, timeout=timedelta(minutes=30))
        return d, device

    def sums(self, values: list[float]) -> list[float]:
        """Element-wise sums over all ranks."""
        if not self.enabled:
            return values
        t = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(t)
        return t.tolist()

    def share(self, obj: object) -> object:
        """Rank 0's ``obj`` on every rank (e.g. a resume state only node 0's disk has)."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0, device=torch.device("cpu"))
        return box[0]

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def close(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()


def wrap(model: nn.Module, d: Dist, device: torch.device, sync_bn: bool, unused_parameters: bool) -> nn.Module:
    """``model`` as DDP when distributed. ``unused_parameters``: the single-branch baselines leave
    the re-balancing branch without gradients, which DDP must be told about."""
    if not d.enabled:
        return model
    if sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=unused_parameters)


def world_size(p: LaunchSpec) -> int:
    return p.nproc_per_node * p.nnodes


def effective_lr(p: TrainSpec, world: int) -> float:
    """``p.lr`` is for one process's batch; ``lr_scaling`` linear scales it with the global batch
    (``world`` processes x ``p.accumulate`` micro-batches; Goyal et al. 2017), fixed keeps it."""
    return p.lr * world * p.accumulate if p.lr_scaling == "linear" else p.lr


def launch_argv(p: LaunchSpec, module: str) -> list[str] | None:
    """The torchrun command that runs ``module`` on every process, or None when this process should
    run it itself (one process, or already started by torchrun)."""
    if world_size(p) == 1 or "LOCAL_RANK" in os.environ:
        return None
    argv = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={p.nproc_per_node}",
            f"--nnodes={p.nnodes}"]
    if not p.rdzv_endpoint:  # one node (an endpoint is required when nnodes > 1)
        argv.append("--standalone")
    else:
        argv += ["--rdzv-backend=c10d", f"--rdzv-endpoint={p.rdzv_endpoint}", f"--rdzv-id={p.rdzv_id}"]
    return argv + ["-m", module]
