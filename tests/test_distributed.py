"""Multi-process training (``torchrun --nproc-per-node 2 -m deepexposure train``, gloo on CPU).

A 2-process run at global batch 4 must match the 1-process run at batch 4 up to float32 rounding
(the batch sums are taken in another order; deepexposure.distributed states the tolerance), write
its files once, and resume bit for bit like a 1-process run.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import deepexposure
from deepexposure.distributed import rows

from .toy import write_toy_folders

SRC = Path(deepexposure.__file__).resolve().parents[1]
TOTAL = 6
#: DeepExposure I with a policy average: policy, value network, two optimisers, OU noise, EMA
OPTS = ["--algo", "de1", "--policy-ema", "0.5", "--steps", "4", "--p-steps", "2", "--d-steps", "2", "--batch-size", "4",
        "--base-channels", "8", "--disc-base-channels", "8", "--n-segments", "2", "--image-size", "32",
        "--sample-every", "0", "--threads", "1", "--ckpt-every", "3", "--quiet"]
#: weights of a 2-process run vs a 1-process run (float32 rounding carried by Adam; ~1e-6 seen)
ATOL = 1e-4


def _torchrun(*args) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), *filter(None, [env.get("PYTHONPATH")])])
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "deepexposure", "train", *map(str, args)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same run in one process (this one) and in two (torchrun)."""
    from deepexposure.cli import main

    root = tmp_path_factory.mktemp("ddp")
    ins, tgs = write_toy_folders(root)
    assert main(["train", "--inputs", str(ins), "--targets", str(tgs), "--out", str(root / "one"), *OPTS]) == 0
    r = _torchrun("--inputs", ins, "--targets", tgs, "--out", root / "two", *OPTS)
    return root, r


def _tensors(run: Path, step: int = TOTAL) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    d = run / "checkpoints" / f"step_{step:07d}"
    return {f"{f.stem}/{k}": v for f in sorted(d.glob("*.safetensors")) for k, v in load_file(str(f)).items()}


@pytest.mark.slow
def test_two_processes_match_one_at_the_same_global_batch(runs):
    root, r = runs
    one, two = _tensors(root / "one"), _tensors(root / "two")
    assert set(one) == set(two) and any(k.startswith("value/") for k in one) and any(k.startswith("policy_ema/") for k in one)
    for k, v in one.items():
        if v.is_floating_point():
            assert torch.allclose(v, two[k], rtol=0, atol=ATOL), (k, (v - two[k]).abs().max().item())
        else:  # the run's generator state: both drew the same numbers
            assert torch.equal(v, two[k]), k
    assert not all(torch.equal(v, two[k]) for k, v in one.items()), "2 processes should differ in rounding: is the run sharded at all?"
    # written once: one log row per step, one set of checkpoints, one model, one summary line
    with (root / "two" / "log.csv").open() as f:
        assert [row["step"] for row in csv.DictReader(f)] == [str(i) for i in range(TOTAL)]
    assert sorted(p.name for p in (root / "two" / "checkpoints").iterdir()) == ["latest", "step_0000003", "step_0000006"]
    assert (root / "two" / "model" / "config.json").exists()
    assert r.stdout.count("trained 6 steps") == 1 and "on 2 processes" in r.stdout


@pytest.mark.slow
def test_two_process_resume_matches_the_uninterrupted_run(runs):
    root, _ = runs
    resumed = root / "resumed"
    shutil.copytree(root / "two", resumed)
    shutil.rmtree(resumed / "checkpoints" / "step_0000006")  # as if killed after step 3's checkpoint
    (resumed / "checkpoints" / "latest").write_text("step_0000003")
    _torchrun("--out", resumed, "--resume", "--quiet")
    a, b = _tensors(root / "two"), _tensors(resumed)
    assert set(a) == set(b) and all(torch.equal(v, b[k]) for k, v in a.items())


def test_rows_split_the_batch_evenly():
    from deepexposure.distributed import DistContext

    ctxs = [DistContext(r, 3, r, "gloo") for r in range(3)]
    assert [rows(c, 6) for c in ctxs] == [slice(0, 2), slice(2, 4), slice(4, 6)]
    assert rows(None, 5) == slice(None)
    with pytest.raises(ValueError, match="does not split evenly"):
        rows(ctxs[0], 4)
