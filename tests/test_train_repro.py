"""Reproducible training through the real ``deepexposure train`` command.

The seed tests and the ``kill -9`` test run the command in fresh processes (a fresh process is
what shows that the initial weights depend on ``--seed`` alone). A run compares equal to another
when every file of its final checkpoint is byte-identical: all networks, the optimiser states, the
run's generator state, the OU state, the step.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import deepexposure
from deepexposure.cli import main
from deepexposure.config import ConfigError
from deepexposure.train import TrainConfig

from .toy import write_toy_folders

SRC = Path(deepexposure.__file__).resolve().parents[1]

#: 1 + 24 steps of DeepExposure I with a policy average: value network, two optimisers, OU state, EMA
STEPS, TOTAL = 24, 25
OPTS = ["--algo", "de1", "--policy-ema", "0.5", "--steps", str(STEPS), "--p-steps", "1", "--d-steps", "1",
        "--batch-size", "2", "--base-channels", "8", "--disc-base-channels", "8", "--n-segments", "2",
        "--image-size", "32", "--sample-every", "0", "--threads", "1", "--quiet"]


def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), *filter(None, [env.get("PYTHONPATH")])])
    return env


def _cmd(*args) -> list[str]:
    return [sys.executable, "-m", "deepexposure", "train", *map(str, args)]


def _train(*args, timeout: float = 180) -> subprocess.CompletedProcess:
    """``deepexposure train ARGS`` in a fresh process; fails the test with its stderr if it fails."""
    r = subprocess.run(_cmd(*args), env=_env(), capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stderr
    return r


def _ckpt(run: Path, step: int = TOTAL) -> dict[str, bytes]:
    d = run / "checkpoints" / f"step_{step:07d}"
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


def _folders(root: Path) -> tuple[Path, Path]:
    return write_toy_folders(root)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run, seed 0, checkpoints at 10, 20 and 25 (the last two kept)."""
    root = tmp_path_factory.mktemp("repro")
    ins, tgs = _folders(root)
    run = root / "A"
    _train("--inputs", ins, "--targets", tgs, "--out", run, "--ckpt-every", "10", *OPTS)
    assert sorted(p.name for p in (run / "checkpoints").glob("step_*")) == ["step_0000020", "step_0000025"]
    return root, ins, tgs, run


@pytest.mark.slow
def test_same_seed_same_weights_in_fresh_processes(reference):
    root, ins, tgs, a = reference
    _train("--inputs", ins, "--targets", tgs, "--out", root / "B", "--ckpt-every", "10", *OPTS)
    assert _ckpt(root / "B") == _ckpt(a)
    assert _ckpt(root / "B", 20) == _ckpt(a, 20)
    _train("--inputs", ins, "--targets", tgs, "--out", root / "C", "--ckpt-every", "10", "--seed", "1", *OPTS)
    c, ref = _ckpt(root / "C"), _ckpt(a)
    for name in ("policy.safetensors", "policy_ema.safetensors", "value.safetensors", "discriminator.safetensors", "state.safetensors"):
        assert c[name] != ref[name], name


def _kill_after_checkpoint(args: list, run: Path, step: int) -> int:
    """Start ``deepexposure train ARGS``, SIGKILL it once checkpoint ``step`` is complete; return the newest saved step."""
    proc = subprocess.Popen(_cmd(*args), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (run / "checkpoints" / f"step_{step:07d}" / "state.json").exists():
            assert proc.poll() is None, f"run ended before it could be killed: {proc.stderr.read()}"
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        proc.stderr.close()
    return json.loads((run / "checkpoints" / (run / "checkpoints" / "latest").read_text() / "state.json").read_text())["step"]


@pytest.mark.slow
def test_kill_9_then_resume_matches_uninterrupted_run(reference):
    """SIGKILL a run once it has written a checkpoint (one per step); ``--resume`` to the end equals the reference."""
    root, ins, tgs, a = reference
    run = root / "killed"
    done = _kill_after_checkpoint(["--inputs", ins, "--targets", tgs, "--out", run, "--ckpt-every", "1", *OPTS], run, 3)
    assert 3 <= done < TOTAL
    r = _train("--out", run, "--resume")
    assert f"trained {TOTAL} steps" in r.stdout
    assert _ckpt(run) == _ckpt(a)
    rows = (run / "log.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == list(range(TOTAL))


@pytest.mark.slow
def test_pixelrl_kill_9_in_the_warmup_then_resume_matches_uninterrupted_run(tmp_path):
    """PixelRL with the supervised warm-up: killed during the warm-up, resumed through the RL phase,
    it ends on the uninterrupted run's bytes (network, reward-map filter, Adam, generator)."""
    ins, _ = _folders(tmp_path)
    total = 4 + 16
    opts = ["--algo", "pixelrl", "--task", "denoise", "--inputs", ins, "--pretrain-steps", "4", "--steps", "16", "--batch-size", "2",
            "--image-size", "16", "--channels", "4", "--photo-size", "64", "--rmc-start", "0.5", "--sample-every", "0",
            "--threads", "1", "--quiet", "--seed", "2"]
    _train("--out", tmp_path / "A", "--ckpt-every", "7", *opts)
    run = tmp_path / "killed"
    done = _kill_after_checkpoint(["--out", run, "--ckpt-every", "1", *opts], run, 2)
    assert 2 <= done < total
    r = _train("--out", run, "--resume")
    assert f"trained {total} episodes" in r.stdout
    assert _ckpt(run, total) == _ckpt(tmp_path / "A", total)
    phases = [row.split(",")[1] for row in (run / "log.csv").read_text().splitlines()[1:]]
    assert phases == ["warmup"] * 4 + ["pixelrl"] * 16


def _copy(reference, name: str) -> Path:
    root, _, _, a = reference
    run = root / name
    shutil.copytree(a, run)
    return run


def test_corrupt_newest_checkpoint_falls_back_to_previous(reference, capsys):
    """A garbled or truncated newest checkpoint is skipped with one warning naming it; the run
    resumes from the one before and still ends on the reference's weights."""
    a = reference[3]
    for how in ("flip", "truncate"):
        run = _copy(reference, f"corrupt-{how}")
        bad = run / "checkpoints" / "step_0000025" / "state.safetensors"
        data = bytearray(bad.read_bytes())
        if how == "flip":  # one byte of tensor data: only the recorded SHA-256 notices
            data[len(data) // 2] ^= 0xFF
        else:
            data = data[: len(data) // 2]
        bad.write_bytes(bytes(data))
        capsys.readouterr()
        assert main(["train", "--out", str(run), "--resume", "--quiet"]) == 0
        err = [ln for ln in capsys.readouterr().err.splitlines() if ln]
        assert len(err) == 1 and err[0].startswith("warning: ") and "step_0000025" in err[0] and "state.safetensors" in err[0], err
        assert "resuming from step_0000020" in err[0]
        assert (run / "checkpoints" / "corrupt_step_0000025").is_dir()
        assert _ckpt(run) == _ckpt(a)


def test_no_usable_checkpoint_is_one_line_error(reference, capsys):
    run = _copy(reference, "corrupt-all")
    (run / "checkpoints" / "step_0000025" / "discriminator.safetensors").unlink()
    (run / "checkpoints" / "step_0000020" / "state.json").write_text("{not json")
    capsys.readouterr()
    assert main(["train", "--out", str(run), "--resume", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "no usable checkpoint" in err[0], err
    assert "step_0000025: discriminator.safetensors is missing" in err[0] and "step_0000020: state.json unreadable" in err[0]
    assert sorted(p.name for p in (run / "checkpoints").glob("*step_*")) == ["step_0000020", "step_0000025"]  # nothing moved


def test_resume_with_changed_options(reference, capsys):
    """Maths options are refused (one line, old -> new) unless --allow-changes; sizes never change;
    operational ones are reported; config.json keeps the first command and lists the resumes."""
    root = reference[0]
    run = _copy(reference, "changes")
    first = json.loads((run / "config.json").read_text())
    ckpts = _ckpt(run)

    def resume(*opts) -> tuple[int, list[str], list[str]]:
        capsys.readouterr()
        code = main(["train", "--out", str(run), "--resume", "--quiet", *opts])
        out, err = capsys.readouterr()
        return code, out.splitlines(), err.splitlines()

    code, _, err = resume("--lr-policy", "1e-3", "--d-steps", "2")
    assert code == 2 and len(err) == 1
    assert err[0] == ("error: --resume would change the run's maths: --d-steps 1 -> 2, --lr-policy 1.5e-05 -> 0.001; "
                      "pass --allow-changes to apply, or drop these options")
    code, _, err = resume("--batch-size", "4", "--allow-changes")
    assert code == 2 and len(err) == 1 and err[0].startswith("error: --resume cannot change --batch-size 2 -> 4")
    code, _, err = resume("--inputs", str(reference[2]))  # other photos: the maths changes too
    assert code == 2 and "--inputs " in err[0] and "--allow-changes" in err[0]
    assert json.loads((run / "config.json").read_text()) == first and _ckpt(run) == ckpts  # refusals write nothing

    code, out, err = resume("--ckpt-every", "5")
    assert code == 0 and "resume: --ckpt-every 10 -> 5" in out and not err
    code, out, err = resume("--lr-policy", "1e-3", "--steps", str(STEPS + 1), "--allow-changes")
    assert code == 0 and "resume: --steps 24 -> 25" in out
    assert len(err) == 1 and err[0] == "warning: resume with changed maths (--allow-changes): --lr-policy 1.5e-05 -> 0.001"
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["command"] == first["command"] and "--resume" not in cfg["command"]
    assert cfg["train"]["steps"] == STEPS + 1 and cfg["train"]["ckpt_every"] == 5 and cfg["agent"]["lr_policy"] == 1e-3
    r1, r2 = cfg["resumes"]
    assert r1["changes"] == {"ckpt_every": [10, 5]} and r1["from_step"] == TOTAL and r1["checkpoint"] == "step_0000025"
    assert r2["changes"] == {"steps": [STEPS, STEPS + 1], "lr_policy": [1.5e-05, 1e-3]} and r2["from_step"] == TOTAL
    assert r2["command"].startswith("deepexposure train --out") and "--allow-changes" in r2["command"]
    assert (run / "checkpoints" / f"step_{TOTAL + 1:07d}").is_dir()
    assert root.exists()


@pytest.mark.parametrize("opts, message", [
    (["--batch-size", "0"], "--batch-size must be >= 1, got 0"),
    (["--steps", "-1"], "--steps must be >= 0, got -1"),
    (["--steps", "0", "--p-steps", "0"], "--steps must be >= 1 when p_steps and pretrain_steps are 0, got 0"),
    (["--d-steps", "0"], "--d-steps must be >= 1, got 0"),
    (["--image-size", "8"], "--image-size must be >= 16, got 8"),
    (["--n-segments", "0"], "--n-segments must be >= 1, got 0"),
    (["--base-channels", "-2"], "--base-channels must be >= 1, got -2"),
    (["--disc-base-channels", "0"], "--disc-base-channels must be >= 1, got 0"),
    (["--ckpt-every", "0"], "--ckpt-every must be >= 1, got 0"),
    (["--keep-checkpoints", "0"], "--keep-checkpoints must be >= 1, got 0"),
    (["--min-images", "0"], "--min-images must be >= 1, got 0"),
    (["--algo", "exposure", "--n-edits", "0"], "--n-edits must be >= 1, got 0"),
])
def test_bad_sizes_are_one_line_errors(tmp_path, capsys, opts, message):
    run = tmp_path / "run"
    code = main(["train", "--inputs", str(tmp_path), "--targets", str(tmp_path), "--out", str(run), "--quiet", *opts])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == [f"error: {message}"]
    assert not run.exists()


def test_train_config_checks_its_ranges():
    with pytest.raises(ConfigError, match="batch_size must be >= 1, got 0"):
        TrainConfig(batch_size=0)
    with pytest.raises(ConfigError, match="gan_loss must be one of"):
        TrainConfig(gan_loss="hinge")
    assert TrainConfig(steps=0, p_steps=3).steps == 0  # discriminator pre-training only (scripts/critic_shape.py)


def test_pairs_and_pretraining_resume_equals_an_uninterrupted_run(tmp_path):
    """``--pairs-from`` with supervised pre-training: the renewed pair pool is rebuilt on ``--resume``,
    so a run interrupted after its step-3 checkpoint (mid pre-training) ends on the same bytes."""
    _, tgs = _folders(tmp_path)
    opts = ["--pairs-from", tgs, "--targets", tgs, "--pretrain-steps", "4", "--p-steps", "1", "--steps", "2",
            "--d-steps", "1", "--batch-size", "2", "--base-channels", "8", "--disc-base-channels", "8",
            "--n-segments", "2", "--image-size", "32", "--pairs-pool", "6", "--pairs-refresh", "2",
            "--pairs-kinds", "exposure,backlit", "--ckpt-every", "3", "--keep-checkpoints", "5", "--sample-every", "0",
            "--threads", "1", "--quiet"]
    a = tmp_path / "A"
    _train("--out", a, *opts)
    rows = [r.split(",") for r in (a / "log.csv").read_text().splitlines()[1:]]
    assert [r[1] for r in rows] == ["-1"] * 4 + ["0"] + ["1"] * 2  # pre-training, discriminator, RL
    cfg = json.loads((a / "config.json").read_text())
    assert cfg["pairs_from"] == str(tgs.resolve()) and cfg["train"]["pretrain_steps"] == 4
    b = tmp_path / "B"
    shutil.copytree(a, b)
    shutil.rmtree(b / "checkpoints" / "step_0000006")
    shutil.rmtree(b / "checkpoints" / "step_0000007")
    (b / "checkpoints" / "latest").write_text("step_0000003")
    _train("--out", b, "--resume")
    assert _ckpt(b, 7) == _ckpt(a, 7) and _ckpt(b, 6) == _ckpt(a, 6)


def test_pretraining_needs_paired_data(tmp_path, capsys):
    ins, tgs = _folders(tmp_path)
    code = main(["train", "--inputs", str(ins), "--targets", str(tgs), "--out", str(tmp_path / "r"), "--pretrain-steps", "2",
                 "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--references or --pairs-from" in err[0]
