"""Test-suite settings: one torch thread.

The networks in the tests are tiny; with several OpenMP threads on a busy 2-core machine torch
spends most of its time waiting for preempted threads. One thread keeps timings predictable.
"""

import torch

torch.set_num_threads(1)
