"""Multi-process data-parallel training: ``torchrun --nproc-per-node N -m deepexposure train ...``.

Every process (rank) holds the whole run: the same data, networks, optimisers and the run's one
``torch.Generator``, seeded alike. Each step, every rank draws the *global* mini-batch (indices,
exploration noise, discriminator samples, gradient-penalty interpolation weights) exactly as one
process would, and computes only its contiguous share of the rows, ``rows(ctx, B)``. The agent's
and the discriminator's losses are means over their rows, so averaging the ranks' gradients
(:func:`average_gradients`, an all-reduce before every optimiser step) gives the gradient of the
mean over the global batch: the update one process makes with batch ``B``. The machine outputs each
rank produced are gathered (:func:`gather_rows`), so the discriminator's memory is the global one.

What the maths allows. Sums over the batch are then taken in another order (per rank, then across
ranks), so weights agree with a one-process run up to float32 rounding, which Adam's normalisation
carries forward: ``tests/test_distributed.py`` checks a 2-process CPU run against a 1-process run at
the same global batch to an absolute 1e-4 on every weight after a few steps (at most about 6e-6
seen). Logged metrics are means over the ranks: the global value for means (losses, ``ev_mean``)
and approximate for ``ev_std`` (the mean of the ranks' standard deviations).

Why not ``torch.nn.parallel.DistributedDataParallel``: it reduces gradients in hooks that assume one
forward and one backward per module per step. Here the policy runs once per segment before the
backward, the discriminator is used both frozen (the agent's reward) and in a double-backward
gradient penalty, and the agents step their own optimisers. An all-reduce of the gradients just
before each optimiser step (one flat buffer per optimiser) is the same arithmetic without those
assumptions; it gives up DDP's overlap of communication with the backward pass, which matters little
for networks of this size (about a million weights).

Only rank 0 writes (``config.json``, the log, samples, checkpoints, the model); on ``--resume`` it
chooses the checkpoint and every rank loads that one. gloo on CPU, NCCL on CUDA (one GPU per
process, ``LOCAL_RANK``). The white-box agent is not supported: its trajectory buffer draws
per-trajectory choices that cannot be split by rows.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable

import torch

__all__ = ["DistContext", "Shardable", "init_from_env", "rows", "gather_rows", "average_gradients", "mean_metrics",
           "on_main", "main_first", "close"]

T = TypeVar("T")


@dataclass(frozen=True)
class DistContext:
    """This process's place in a multi-process run (from torchrun's environment)."""

    rank: int
    world: int
    local_rank: int
    backend: str

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes files."""
        return self.rank == 0


@runtime_checkable
class Shardable(Protocol):
    """An agent that computes only ``rows`` of each global batch (its exploration noise included)."""

    rows: slice


def init_from_env(device: str) -> DistContext | None:
    """Join the process group torchrun set up (``WORLD_SIZE`` > 1), or return None for a one-process run.

    ``device`` is the run's ``--device``: CUDA ('cuda', 'cuda:N', or 'auto' with a GPU) uses NCCL and
    GPU ``LOCAL_RANK`` (made the current device, so 'cuda' means it); anything else gloo.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    import torch.distributed as dist

    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    backend = "nccl" if cuda else "gloo"
    if cuda:
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return DistContext(rank, world, local, backend)


def close(ctx: DistContext | None) -> None:
    """Leave the process group (after a last barrier, so no rank exits while another still talks)."""
    if ctx is None:
        return
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def rows(ctx: DistContext | None, n: int) -> slice:
    """The contiguous rows of a global batch of ``n`` that this rank computes (all of them without ``ctx``).

    Raises ValueError when ``n`` does not split evenly (the average of the ranks' means would then
    not be the global mean).
    """
    if ctx is None:
        return slice(None)
    if n % ctx.world:
        raise ValueError(f"a batch of {n} does not split evenly over {ctx.world} processes")
    k = n // ctx.world
    return slice(ctx.rank * k, (ctx.rank + 1) * k)


def gather_rows(ctx: DistContext | None, x: torch.Tensor) -> torch.Tensor:
    """Every rank's ``x`` (same shape on all), concatenated in rank order along dim 0: the global batch."""
    if ctx is None:
        return x
    import torch.distributed as dist

    parts = [torch.empty_like(x) for _ in range(ctx.world)]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


def average_gradients(ctx: DistContext, optimizer: torch.optim.Optimizer):
    """Before every ``optimizer.step()``, replace each gradient by its mean over the ranks (one all-reduce).

    Every rank must step with gradients on the same parameters (the same code path). Returns the
    hook's handle.
    """
    import torch.distributed as dist

    def hook(opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        grads = [p.grad for g in opt.param_groups for p in g["params"] if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= ctx.world
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()

    return optimizer.register_step_pre_hook(hook)


def mean_metrics(ctx: DistContext | None, metrics: dict[str, float], device: torch.device) -> dict[str, float]:
    """Each number averaged over the ranks (every rank passes the same keys in the same order); ints (step, phase) stay ints."""
    if ctx is None or not metrics:
        return metrics
    import torch.distributed as dist

    keys = list(metrics)
    t = torch.tensor([float(metrics[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    t /= ctx.world
    return {k: (round(v) if isinstance(metrics[k], int) else v) for k, v in zip(keys, t.tolist())}


def on_main(ctx: DistContext | None, fn: Callable[[], T]) -> T:
    """Run ``fn`` on rank 0 and give every rank its result; an exception it raises is raised on every rank."""
    if ctx is None:
        return fn()
    import torch.distributed as dist

    box: list[Any] = [None]
    if ctx.is_main:
        try:
            box[0] = (True, fn())
        except Exception as e:
            box[0] = (False, e)
    dist.broadcast_object_list(box, src=0)
    ok, value = box[0]
    if not ok:
        raise value
    return value


@contextmanager
def main_first(ctx: DistContext | None) -> Iterator[None]:
    """Rank 0 runs the block first (e.g. fills a cache on disk), the other ranks after it."""
    if ctx is None:
        yield
        return
    import torch.distributed as dist

    if not ctx.is_main:
        dist.barrier()
    yield
    if ctx.is_main:
        dist.barrier()
