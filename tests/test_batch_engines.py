"""Batch engines (deepexposure.batch): worker processes and Ray give the outputs, recipes and report of a serial run.

The Ray tests start a local 2-CPU cluster (slow; skipped when Ray is not installed).
"""

from __future__ import annotations

from pathlib import Path

import pytest

import deepexposure
from deepexposure.batch import Engine, ItemFailed, ordered_map, ray_available

SRC = Path(deepexposure.__file__).resolve().parents[1]


def _check_flaky(out: list, marks: Path, n: int) -> None:
    """What :func:`tests.batch_work.flaky` must give with one retry: order kept, only the dead worker's item retried."""
    assert [i for i, _ in out] == list(range(n))
    res = dict(out)
    assert res[2] == (20, True)  # retried after its worker died
    assert isinstance(res[5], ItemFailed) and "2 attempt(s)" in res[5].reason
    assert isinstance(res[7], ItemFailed) and "KeyError" in res[7].reason and "seven" in res[7].reason
    assert [res[i] for i in range(n) if i not in (2, 5, 7)] == [(i * 10, False) for i in range(n) if i not in (2, 5, 7)]
    assert sorted(p.name for p in marks.iterdir()) == sorted(f"done_{i}" for i in range(n) if i not in (5, 7))


@pytest.mark.slow
def test_worker_processes_keep_order_retry_only_the_dead_workers_item(tmp_path):
    from .batch_work import flaky

    _check_flaky(list(ordered_map(flaky, str(tmp_path), range(9), Engine(jobs=2, retries=1))), tmp_path, 9)


def test_engine_options_are_checked():
    for bad in (dict(jobs=-1), dict(kind="spark"), dict(retries=-1)):
        with pytest.raises(ValueError):
            Engine(**bad)


def _retouch(*args) -> tuple[int, list[str], list[str]]:
    """``deepexposure retouch ARGS`` (this process; workers are fresh ones): exit code, stdout lines, error lines."""
    import contextlib
    import io

    from deepexposure.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["retouch", *map(str, args)])
    return code, out.getvalue().splitlines(), [ln for ln in err.getvalue().splitlines() if ln.startswith("error:")]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Six photos in two subfolders and a broken file; the serial run's outputs (``serial/``) and report."""
    from .toy import write_smooth_photos

    root = tmp_path_factory.mktemp("batch")
    write_smooth_photos(root / "in" / "a", 3, (6, 8), 120, 8, 160)
    write_smooth_photos(root / "in" / "b", 3, (5, 7), 100, 10, 140)
    (root / "in" / "b" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    return root, _retouch(root / "in", "-o", root / "serial")


def _same_outputs(a: Path, b: Path) -> None:
    """The same files, byte for byte (images and recipes)."""
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert len([f for f in files if f.suffix == ".png"]) == 6 and len([f for f in files if f.suffix == ".json"]) == 6
    for f in files:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f


def _same_report(run: tuple, serial: tuple, out: str) -> None:
    assert run[0] == serial[0] == 1  # the broken file
    assert [ln.replace(f"/{out}/", "/serial/") for ln in run[1]] == serial[1]
    assert run[2] == serial[2] and len(run[2]) == 1 and "broken.jpg" in run[2][0]
    assert serial[1][-1] == "6 retouched, 1 failed"


@pytest.mark.slow
def test_jobs_2_same_outputs_recipes_and_report_as_jobs_1(folder):
    folder, serial = folder
    run = _retouch(folder / "in", "-o", folder / "jobs2", "--jobs", "2")
    _same_outputs(folder / "serial", folder / "jobs2")
    _same_report(run, serial, "jobs2")


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray cluster with 2 CPUs; the workers can unpickle the tests' functions without importing them."""
    if not ray_available():
        pytest.skip("Ray is not installed (pip install 'deepexposure[ray]')")
    import ray
    import ray.cloudpickle

    from . import batch_work

    ray.cloudpickle.register_pickle_by_value(batch_work)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": str(SRC)}})
    yield
    ray.shutdown()


@pytest.mark.slow
def test_ray_engine_same_outputs_recipes_report_and_retries(folder, ray_cluster, tmp_path):
    from .batch_work import flaky

    folder, serial = folder
    run = _retouch(folder / "in", "-o", folder / "ray", "--engine", "ray")
    _same_outputs(folder / "serial", folder / "ray")
    _same_report(run, serial, "ray")
    _check_flaky(list(ordered_map(flaky, str(tmp_path), range(9), Engine("ray", retries=1))), tmp_path, 9)


def _without_timings(report) -> dict:
    d = report.to_dict()
    for rows in d["per_image"].values():
        for r in rows:
            r.pop("seconds")
    for summary in d["summary"].values():
        summary.pop("seconds")
    return d


@pytest.mark.slow
def test_eval_on_ray_gives_the_serial_report(tmp_path, ray_cluster):
    import torch

    from deepexposure import synth as S
    from deepexposure.evaluate import EvalConfig, evaluate_paired
    from deepexposure.io import write_image
    from deepexposure.methods import get_method

    (tmp_path / "src").mkdir()
    g = torch.Generator().manual_seed(0)
    for i in range(5):
        base = torch.rand(1, 3, 4, 6, generator=g) * 0.8 + 0.1
        write_image(tmp_path / "src" / f"p{i}.png", torch.nn.functional.interpolate(base, size=(40, 60), mode="bilinear"))
    S.make_benchmark(sorted((tmp_path / "src").iterdir()), tmp_path / "b", S.SynthConfig(seed=0, size=48))
    (tmp_path / "b" / "input" / "p2.png").write_bytes(b"broken")  # a pair that cannot be read: skipped on both
    methods = {m: get_method(m) for m in ("identity", "auto", "oracle-global")}
    cfg = EvalConfig(long_edge=48, sheet=3, sheet_tile=32)
    serial, serial_tiles = evaluate_paired(tmp_path / "b", methods, cfg, progress=False)
    ray_report, ray_tiles = evaluate_paired(tmp_path / "b", methods, cfg, progress=False, engine=Engine("ray"))
    assert serial.n_images == 4 and len(serial.skipped) == 1
    assert _without_timings(ray_report) == _without_timings(serial)
    assert {k: [t.tolist() for t in v] for k, v in ray_tiles.items()} == {k: [t.tolist() for t in v] for k, v in serial_tiles.items()}


def test_engine_usage_errors_are_one_line(tmp_path, capsys):
    from deepexposure.cli import main

    assert main(["retouch", str(tmp_path), "-o", str(tmp_path / "o"), "--address", "x:1"]) == 2
    assert capsys.readouterr().err.strip() == "error: --address needs --engine ray"
    assert main(["retouch", str(tmp_path), "-o", str(tmp_path / "o"), "--jobs", "-2"]) == 2
    assert "--jobs must be >= 0" in capsys.readouterr().err
