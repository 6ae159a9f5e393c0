"""Thread counts of the retouching path: small work runs on the calling thread.

A torch op on a small tensor still opens an OpenMP parallel region when it has more than
32768 elements; on a 64 x 64 thumbnail, or a 0.5 MP photo, the hand-overs cost more than the
work, and on a busy machine each one can wait a scheduler slice for a worker (the decide step of
a 500 px photo: 0.11 s on one thread, 1.1 s median on two beside a one-thread job on 2 cores).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

__all__ = ["torch_threads"]


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads, then restore the count.

    The count belongs to the calling thread (OpenMP's ``omp_set_num_threads``): threads that
    render at the same time keep theirs. Results never depend on it.
    """
    before = torch.get_num_threads()
    if n == before:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
