"""Tests for deepexposure.evaluate and the eval command on a tiny synthetic benchmark."""

import json

import pytest
import torch

from deepexposure import synth as S
from deepexposure.evaluate import EvalConfig, evaluate_paired, format_markdown, write_report
from deepexposure.io import read_image, write_image
from deepexposure.methods import get_method


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    (root / "src").mkdir()
    g = torch.Generator().manual_seed(0)
    for i in range(3):
        base = torch.rand(1, 3, 4, 6, generator=g) * 0.8 + 0.1
        write_image(root / "src" / f"p{i}.png", torch.nn.functional.interpolate(base, size=(40, 60), mode="bilinear"))
    S.make_benchmark(sorted((root / "src").iterdir()), root / "b", S.SynthConfig(seed=0, size=48))
    return root / "b"


def test_identity_scores_input_and_reference_is_perfect(bench):
    cfg = EvalConfig(long_edge=48, sheet=2, sheet_tile=40)
    methods = {"identity": get_method("identity"), "auto": get_method("auto")}
    report, tiles = evaluate_paired(bench, methods, cfg, progress=False)
    assert report.n_images == 3 and set(report.summary) == {"identity", "auto"}
    from deepexposure.metrics import mse

    inp = read_image(bench / "input" / "p0.png").img_srgb
    ref = read_image(bench / "reference" / "p0.png").img_srgb
    assert report.per_image["identity"][0]["mse"] == pytest.approx(mse(inp, ref).item(), rel=1e-5)
    for q in ("luminance", "contrast", "saturation"):
        assert 0 <= report.histogram["identity"][q] <= 1
    assert report.sheet_names == ["p0", "p2"]
    assert list(tiles) == ["input", "identity", "auto", "reference"] and len(tiles["auto"]) == 2


def test_failing_method_is_reported_not_fatal(bench):
    class Broken:
        name = "broken"

        def plan(self, img):
            raise RuntimeError("boom")

    report, _ = evaluate_paired(bench, {"broken": Broken(), "identity": get_method("identity")}, EvalConfig(sheet=1, sheet_tile=32), progress=False)
    assert "broken" not in report.summary and len(report.errors["broken"]) == 3
    md = format_markdown(report)
    assert "| identity |" in md and "broken: failed on 3" in md


def test_write_report(bench, tmp_path):
    report, tiles = evaluate_paired(bench, {"identity": get_method("identity")}, EvalConfig(sheet=2, sheet_tile=32), progress=False)
    files = write_report(report, tiles, tmp_path)
    assert [f.name for f in files] == ["eval.md", "eval.json", "eval_sheet.png"]
    data = json.loads((tmp_path / "eval.json").read_text())
    assert data["summary"]["identity"]["n"] == 3
    sheet = read_image(tmp_path / "eval_sheet.png").img_srgb
    assert sheet.shape[-1] == 3 * (32 + 4) + 4
    with pytest.raises(FileExistsError):
        write_report(report, tiles, tmp_path)


def test_cli(bench, tmp_path, capsys):
    from deepexposure.cli import main

    out = tmp_path / "out"
    rc = main(["eval", "--paired", str(bench), "--methods", "identity,clahe,nosuch", "--out", str(out), "--sheet", "1", "--long-edge", "32", "--quiet"])
    assert rc == 1  # an unknown method fails the run; the others are still scored and reported
    captured = capsys.readouterr()
    assert "method nosuch" in captured.err and "could not be built: nosuch" in captured.err and "| clahe |" in captured.out
    assert (out / "eval.md").is_file() and (out / "eval_sheet.png").is_file()
    assert main(["eval", "--paired", str(bench), "--methods", "identity", "--out", str(out), "--quiet"]) == 2
    assert main(["eval", "--paired", str(tmp_path), "--out", str(out), "--quiet"]) == 2


def test_eval_model_option_reaches_every_renderer_of_the_policy(tmp_path):
    """``eval --model PATH`` serves deepexposure and its local renderers alike; METHOD=PATH names one."""
    import argparse

    from deepexposure.agents.deepexposure import DeepExposureAgent, DeepExposureConfig
    from deepexposure.commands.eval import _build_methods

    DeepExposureAgent(DeepExposureConfig(base_channels=8), 1).save_model(tmp_path / "mine")
    names = ["deepexposure", "deepexposure-local", "deepexposure-local-fusion"]
    methods, failed = _build_methods(names, argparse.Namespace(model=[str(tmp_path / "mine")], ev=None))
    assert not failed and all(methods[n].model_dir == (tmp_path / "mine").resolve() for n in names)
    methods, _ = _build_methods(names, argparse.Namespace(model=[f"deepexposure-local={tmp_path / 'mine'}"], ev=None))
    assert methods["deepexposure-local"].model_dir == (tmp_path / "mine").resolve()
    assert methods["deepexposure"].model_dir != methods["deepexposure-local"].model_dir  # the others keep the default
