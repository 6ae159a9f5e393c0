"""Batch engines (deepexposure.batch): worker processes and Ray give the outputs, recipes and report of a serial run.

The Ray tests start a local 2-CPU cluster (slow; skipped when Ray is not installed).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import deepexposure
from deepexposure.batch import Engine, ItemFailed, ordered_map, ray_available

SRC = Path(deepexposure.__file__).resolve().parents[1]
needs_ray = pytest.mark.skipif(not ray_available(), reason="Ray is not installed (pip install 'deepexposure[ray]')")


def crash_once(marks: str, item: int, retry: bool) -> tuple[int, bool]:
    """Item 2's first attempt kills its worker; every item records that it finished (a second finish raises)."""
    root = Path(marks)
    if item == 2 and not retry:
        os._exit(3)
    with open(root / f"done_{item}", "x") as f:  # "x": an item finished twice would fail here
        f.write("1")
    return item * 10, retry


def always_crash(marks: str, item: int, retry: bool) -> int:
    if item == 1:
        os._exit(4)
    return item


def raises_on_odd(marks: str, item: int, retry: bool) -> int:
    if item % 2:
        raise KeyError(f"odd {item}")
    return item


@pytest.mark.slow
def test_worker_processes_keep_order_retry_only_the_dead_workers_item(tmp_path):
    out = list(ordered_map(crash_once, str(tmp_path), range(8), Engine(jobs=2, retries=1)))
    assert [i for i, _ in out] == list(range(8))
    assert [r for _, r in out] == [(i * 10, i == 2) for i in range(8)]
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"done_{i}" for i in range(8)]


@pytest.mark.slow
def test_worker_processes_give_up_after_retries_and_report_raised_errors(tmp_path):
    out = dict(ordered_map(always_crash, str(tmp_path), range(4), Engine(jobs=2, retries=1)))
    assert isinstance(out[1], ItemFailed) and "2 attempt(s)" in out[1].reason
    assert [out[i] for i in (0, 2, 3)] == [0, 2, 3]
    out = dict(ordered_map(raises_on_odd, str(tmp_path), range(4), Engine(jobs=2)))
    assert out[0] == 0 and out[2] == 2
    assert isinstance(out[1], ItemFailed) and out[1].reason == "KeyError: 'odd 1'"


def test_engine_options_are_checked():
    for bad in (dict(jobs=-1), dict(kind="spark"), dict(retries=-1)):
        with pytest.raises(ValueError):
            Engine(**bad)


def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), *filter(None, [env.get("PYTHONPATH")])])
    return env


def _retouch(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deepexposure", "retouch", *map(str, args)], env=_env(),
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Six photos in two subfolders and a broken file: the serial run's outputs and report."""
    from .toy import write_smooth_photos

    root = tmp_path_factory.mktemp("batch")
    write_smooth_photos(root / "in" / "a", 3, (6, 8), 120, 8, 160)
    write_smooth_photos(root / "in" / "b", 3, (5, 7), 100, 10, 140)
    (root / "in" / "b" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    r = _retouch(root / "in", "-o", root / "serial")
    assert r.returncode == 1, r.stderr
    return root, r


def _same_outputs(a: Path, b: Path) -> None:
    from PIL import Image

    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert len([f for f in files if f.suffix == ".png"]) == 6
    for f in files:
        if f.suffix == ".json":
            assert json.loads((a / f).read_text()) == json.loads((b / f).read_text()), f
        else:  # pixels: the files' ICC profiles carry their creation time
            assert np.array_equal(np.asarray(Image.open(a / f)), np.asarray(Image.open(b / f))), f


def _report(r: subprocess.CompletedProcess, root: Path, out: str) -> tuple[list[str], list[str]]:
    lines = [ln.replace(f"/{out}/", "/OUT/") for ln in r.stdout.splitlines()]
    return lines, [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]


@pytest.mark.slow
def test_jobs_2_same_outputs_recipes_and_report_as_jobs_1(folder):
    root, serial = folder
    r = _retouch(root / "in", "-o", root / "jobs2", "--jobs", "2")
    assert r.returncode == 1, r.stderr
    _same_outputs(root / "serial", root / "jobs2")
    assert _report(r, root, "jobs2") == _report(serial, root, "serial")
    lines, errors = _report(r, root, "jobs2")
    assert lines[-1] == "6 retouched, 1 failed" and len(errors) == 1 and "broken.jpg" in errors[0]


@pytest.mark.slow
@needs_ray
def test_ray_engine_same_outputs_recipes_and_report(folder):
    root, serial = folder
    r = _retouch(root / "in", "-o", root / "ray", "--engine", "ray", "--jobs", "2")
    assert r.returncode == 1, r.stderr
    _same_outputs(root / "serial", root / "ray")
    assert _report(r, root, "ray") == _report(serial, root, "serial")


@pytest.mark.slow
@needs_ray
def test_ray_retries_only_the_dead_task_and_reports_errors(tmp_path):
    import ray
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers need not import the tests
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": str(SRC)}})
    try:
        out = list(ordered_map(crash_once, str(tmp_path), range(6), Engine("ray", retries=1)))
        assert [r for _, r in out] == [(i * 10, i == 2) for i in range(6)]
        assert sorted(p.name for p in tmp_path.iterdir()) == [f"done_{i}" for i in range(6)]
        out = dict(ordered_map(always_crash, str(tmp_path), range(3), Engine("ray", retries=1)))
        assert isinstance(out[1], ItemFailed) and "2 attempt(s)" in out[1].reason and [out[0], out[2]] == [0, 2]
        out = dict(ordered_map(raises_on_odd, str(tmp_path), range(3), Engine("ray")))
        assert isinstance(out[1], ItemFailed) and "odd 1" in out[1].reason and [out[0], out[2]] == [0, 2]
    finally:
        ray.shutdown()


def test_engine_usage_errors_are_one_line(tmp_path, capsys):
    from deepexposure.cli import main

    assert main(["retouch", str(tmp_path), "-o", str(tmp_path / "o"), "--address", "x:1"]) == 2
    assert capsys.readouterr().err.strip() == "error: --address needs --engine ray"
    assert main(["retouch", str(tmp_path), "-o", str(tmp_path / "o"), "--jobs", "-2"]) == 2
    assert "--jobs must be >= 0" in capsys.readouterr().err
