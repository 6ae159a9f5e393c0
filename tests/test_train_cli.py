"""``deepexposure train`` end to end on tiny folders: bad data reported, resume, the model retouches."""

from __future__ import annotations

import json

from PIL import Image

from deepexposure.cli import main
from deepexposure.config import add_dataclass_options, dataclass_from_args, field_docs
from deepexposure.train import TrainConfig

from .toy import random_crops, write_toy_folders

TINY = ["--steps", "3", "--p-steps", "1", "--d-steps", "1", "--batch-size", "2", "--base-channels", "8",
        "--disc-base-channels", "8", "--n-segments", "2", "--ckpt-every", "2", "--sample-every", "2", "--quiet"]


def _folders(tmp_path):
    ins, tgs = write_toy_folders(tmp_path)
    (ins / "broken.jpg").write_bytes(b"not a jpeg")
    Image.new("L", (48, 48), 90).save(tgs / "gray.png")
    return ins, tgs


def test_train_resume_and_retouch(tmp_path, capsys):
    ins, tgs = _folders(tmp_path)
    run = tmp_path / "run"
    assert main(["train", "--algo", "de2", "--inputs", str(ins), "--targets", str(tgs), "--out", str(run), *TINY]) == 0
    err = capsys.readouterr().err
    assert "broken.jpg: skipped" in err and "gray.png: skipped (grayscale" in err
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["algo"] == "de2" and cfg["train"]["steps"] == 3 and cfg["agent"]["n_segments"] == 2
    assert cfg["n_inputs"] == 4 and cfg["n_targets"] == 4
    assert (run / "log.csv").read_text().count("\n") == 1 + 4  # header + p_steps + steps
    assert (run / "model" / "model.safetensors").exists() and list((run / "samples").glob("*.png"))
    # a second run into the same folder is refused; --resume of a finished run is a no-op
    assert main(["train", "--inputs", str(ins), "--targets", str(tgs), "--out", str(run), "--quiet"]) == 2
    assert main(["train", "--out", str(run), "--resume", "--quiet"]) == 0
    out = tmp_path / "out"
    assert main(["retouch", str(tgs / "tg0.png"), "-o", str(out), "--model", str(run), "--quiet"]) == 0
    recipe = json.loads((out / "tg0.png.recipe.json").read_text())
    assert recipe["method"]["model_path"].endswith("model") and len(recipe["ops"][0]["evs"]) == 2


def test_train_refuses_too_few_photos(tmp_path, capsys):
    ins, tgs = _folders(tmp_path)
    code = main(["train", "--inputs", str(ins), "--targets", str(tgs), "--out", str(tmp_path / "r"), "--min-images", "9", *TINY])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: ") and str(ins) in err


def test_config_options_from_dataclass_docstrings():
    import argparse

    docs = field_docs(TrainConfig)
    assert docs["lambda_gp"].startswith("gradient-penalty weight")
    p = argparse.ArgumentParser()
    add_dataclass_options(p, TrainConfig, "loop")
    args = p.parse_args(["--steps", "7", "--lambda-gp", "3"])
    cfg = dataclass_from_args(TrainConfig, args, {"seed": 5})
    assert (cfg.steps, cfg.lambda_gp, cfg.seed, cfg.batch_size) == (7, 3.0, 5, 8)


def test_train_with_references_and_resume(tmp_path, capsys):
    """``--references``: matched by file name, recorded in config.json, used again on --resume; a missing
    reference is refused with one line naming the file."""
    from deepexposure.io import tensor_to_uint8

    ins, tgs = _folders(tmp_path)
    refs = tmp_path / "refs"
    refs.mkdir()
    crops = random_crops(5, 1, size=48)
    for i in range(3):
        Image.fromarray(tensor_to_uint8(crops[i : i + 1])).save(refs / f"in{i}.png")
    run = tmp_path / "run"
    base = ["train", "--inputs", str(ins), "--targets", str(tgs), "--references", str(refs), "--out", str(run), *TINY]
    assert main(base) == 2
    assert "no reference for input in3.png" in capsys.readouterr().err
    assert not (run / "checkpoints").exists()
    Image.fromarray(tensor_to_uint8(crops[3:4])).save(refs / "in3.png")
    assert main(base[:-len(TINY)] + [*TINY[:1], "2", *TINY[2:]]) == 0
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["references"] == str(refs.resolve())
    cfg["train"]["steps"] = 3
    (run / "config.json").write_text(json.dumps(cfg))
    assert main(["train", "--out", str(run), "--resume", "--quiet"]) == 0
    assert json.loads((run / "model" / "config.json").read_text())["trained_steps"] == 4
    header, *rows = (run / "log.csv").read_text().splitlines()
    col = header.split(",").index("fidelity_mse")
    assert [r.split(",")[0] for r in rows] == ["0", "1", "2", "3"]
    assert all(r.split(",")[col] != "" for r in rows[1:])  # every agent step, the resumed one too


def test_export_step_writes_that_checkpoints_model(tmp_path, capsys):
    """``--export-step N`` rebuilds the model of checkpoint N: the last one equals RUN/model bit for bit
    (with the policy's running average, which is what is exported), an earlier one differs."""
    from safetensors.torch import load_file

    ins, tgs = _folders(tmp_path)
    run = tmp_path / "run"
    assert main(["train", "--inputs", str(ins), "--targets", str(tgs), "--out", str(run), *TINY,
                 "--policy-ema", "0.5", "--keep-checkpoints", "5"]) == 0
    assert sorted(p.name for p in (run / "checkpoints").glob("step_*")) == ["step_0000002", "step_0000004"]
    last, first = tmp_path / "m4", tmp_path / "m2"
    assert main(["train", "--out", str(run), "--export-step", "4", "--export-to", str(last)]) == 0
    assert main(["train", "--out", str(run), "--export-step", "2", "--export-to", str(first)]) == 0
    ref = load_file(str(run / "model" / "model.safetensors"))
    a, b = load_file(str(last / "model.safetensors")), load_file(str(first / "model.safetensors"))
    assert ref.keys() == a.keys() and all(bool((ref[k] == a[k]).all()) for k in ref)
    assert any(not bool((ref[k] == b[k]).all()) for k in ref)
    meta = json.loads((first / "config.json").read_text())
    assert meta["trained_steps"] == 2 and meta["n_segments"] == 2
    capsys.readouterr()
    assert main(["train", "--out", str(run), "--export-step", "3"]) == 2
    assert "the run has steps 2, 4" in capsys.readouterr().err
    out = tmp_path / "out"
    assert main(["retouch", str(tgs / "tg0.png"), "-o", str(out), "--model", str(first), "--quiet"]) == 0


def test_train_help_is_plain_text_with_choices(capsys):
    import pytest

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert "CFG_" not in out and "``" not in out and ":class:" not in out
    assert "--gan-loss {wgan-gp,logistic}" in out and "--policy-gradient {paper,direct}" in out and "--batch-size N" in out
