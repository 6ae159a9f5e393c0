"""One photo's progress: the stages of ``retouch_file`` reach a callback, ``retouch`` shows them on a
terminal (and only there), and watching changes no output byte."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import threading

import pytest
import torch

from deepexposure.methods import get_method
from deepexposure.pipeline import STAGES, retouch_file
from deepexposure.recipe import Recipe, fusion_op, render, render_steps

from .toy import write_smooth_photos


def _recorder():
    calls: list[tuple[str, int, int]] = []
    return calls, lambda stage, done, total: calls.append((stage, done, total))


def _check_stages(calls: list[tuple[str, int, int]], expected: list[str]) -> dict[str, list[tuple[int, int]]]:
    """Stages come in :data:`STAGES` order, each from ``(0, total)`` to ``(total, total)`` with ``done`` rising."""
    order = [s for i, (s, _, _) in enumerate(calls) if i == 0 or calls[i - 1][0] != s]
    assert order == expected and set(order) <= set(STAGES)
    per: dict[str, list[tuple[int, int]]] = {s: [(d, t) for st, d, t in calls if st == s] for s in order}
    for s, steps in per.items():
        total = steps[0][1]
        assert steps[0] == (0, total) and steps[-1] == (total, total) and {t for _, t in steps} == {total}, s
        assert all(a <= b for (a, _), (b, _) in zip(steps, steps[1:])), s
    return per


@pytest.mark.parametrize("explain", [False, True])
def test_retouch_file_reports_each_stage_and_writes_the_same_bytes(tmp_path, explain):
    (src,) = write_smooth_photos(tmp_path / "in", 1, (4, 4), 48, 0, 64)
    method = get_method("fusion", ev=[-1.0, 0.5, 1.5])
    calls, progress = _recorder()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    watched = retouch_file(method, src, tmp_path / "a" / "p0.png", explain=explain, progress=progress)
    plain = retouch_file(method, src, tmp_path / "b" / "p0.png", explain=explain)
    per = _check_stages(calls, ["decode", "plan", "render"] + (["explain"] if explain else []) + ["encode"])
    # the fixed bracket fuses its 3 frames (not the original): each is built once per pass of the streaming fusion
    assert watched.recipe.ops[0]["include_original"] is False
    assert per["render"][-1] == (6, 6) and [d for d, _ in per["render"]][:7] == list(range(7))
    assert per["encode"][-1] == (2 + explain, 2 + explain)  # image, recipe (and sheet)
    for a, b in [(watched.output, plain.output), (watched.recipe_path, plain.recipe_path), (watched.explain_path, plain.explain_path)]:
        assert a is None and b is None or a.read_bytes() == b.read_bytes()


def test_render_progress_counts_the_ops_steps():
    img = torch.rand(1, 3, 24, 32, generator=torch.Generator().manual_seed(0))
    ops = [{"op": "filter", "name": "gamma", "params": [1.2]}, fusion_op([-1.0, 1.0]), {"op": "clahe", "clip_limit": 0.02},
           fusion_op([0.5], include_original=False)]
    recipe = Recipe(ops=ops)
    seen: list[tuple[int, int]] = []
    out = render(recipe, img, progress=lambda done, total: seen.append((done, total)))
    assert [render_steps(op) for op in ops] == [1, 6, 1, 1]
    assert seen[0] == (0, 9) and seen[-1] == (9, 9) and {t for _, t in seen} == {9}
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert (1, 9) in seen and (7, 9) in seen and (8, 9) in seen  # each op ends at its share
    assert torch.equal(out, render(recipe, img))


def _run_on_terminal(args: list[str], cwd, stdout_too: bool = False) -> tuple[int, str]:
    """Run ``deepexposure ARGS`` with stderr (and with ``stdout_too`` stdout) on a 30x120 pseudo-terminal;
    return (exit code, what it showed)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))
    chunks: list[bytes] = []

    def read() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every writer has closed the terminal
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        rc = subprocess.run([sys.executable, "-m", "deepexposure", *args], stderr=slave,
                            stdout=slave if stdout_too else subprocess.DEVNULL, cwd=cwd, timeout=120).returncode
    finally:
        os.close(slave)
    reader.join(timeout=10)
    os.close(master)
    return rc, b"".join(chunks).decode("utf-8", "replace")


@pytest.mark.slow
def test_retouch_shows_a_photos_stages_on_a_terminal_only(tmp_path):
    (src,) = write_smooth_photos(tmp_path / "in", 1, (4, 4), 96, 0, 128)
    common = ["retouch", str(src), "--method", "fusion", "--ev", "-1,1"]
    rc, shown = _run_on_terminal([*common, "-o", str(tmp_path / "tty")], tmp_path)
    assert rc == 0
    marks = [shown.find(f"p0.png: {stage}") for stage in ("decode", "plan", "render", "encode")]
    assert -1 not in marks and marks == sorted(marks), shown
    assert re.search(r"p0\.png: render:[^\r\n]* 0/4 ", shown), shown  # the render's steps: 2 frames, two passes

    rc, quiet = _run_on_terminal([*common, "-o", str(tmp_path / "quiet"), "--quiet"], tmp_path)
    assert rc == 0 and "p0.png:" not in quiet
    piped = subprocess.run([sys.executable, "-m", "deepexposure", *common, "-o", str(tmp_path / "pipe")],
                           capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert piped.returncode == 0 and "p0.png:" not in piped.stderr  # not a terminal: no stage line
    for name in ("p0.png", "p0.png.recipe.json"):
        assert (tmp_path / "tty" / name).read_bytes() == (tmp_path / "quiet" / name).read_bytes() == (tmp_path / "pipe" / name).read_bytes()


@pytest.mark.slow
def test_apply_shows_a_photos_stages_on_a_terminal(tmp_path):
    (src,) = write_smooth_photos(tmp_path / "in", 1, (4, 4), 96, 0, 128)
    recipe = tmp_path / "r.json"
    recipe.write_text(Recipe(ops=[fusion_op([-1.0, 1.0])]).to_json())
    rc, shown = _run_on_terminal(["apply", str(recipe), str(src), "-o", str(tmp_path / "out.png")], tmp_path)
    marks = [shown.find(f"p0.png: {stage}") for stage in ("decode", "render", "encode")]
    assert rc == 0 and -1 not in marks and marks == sorted(marks), shown
    assert re.search(r"p0\.png: render:[^\r\n]* 0/6 ", shown), shown  # the original and 2 frames, two passes
    assert (tmp_path / "out.png").read_bytes() == _quiet_apply(recipe, src, tmp_path).read_bytes()


def _quiet_apply(recipe, src, tmp_path):
    from deepexposure.cli import main

    assert main(["apply", str(recipe), str(src), "-o", str(tmp_path / "quiet.png"), "--quiet"]) == 0
    return tmp_path / "quiet.png"


@pytest.mark.slow
def test_per_file_lines_do_not_break_the_bars(tmp_path):
    """A batch on a terminal (stdout and stderr both there): each per-file line starts a line of its own,
    never after a bar's text (they go through tqdm.write, which clears the bars first)."""
    srcs = write_smooth_photos(tmp_path / "in", 2, (4, 4), 64, 8, 96)
    rc, shown = _run_on_terminal(["retouch", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--method", "auto"],
                                 tmp_path, stdout_too=True)
    assert rc == 0 and "retouch:" in shown, shown  # the batch's bar was drawn
    for src in srcs:
        line = f"{src} -> "
        at = shown.find(line)
        assert at > 0 and shown[at - 1] in "\r\n", shown
        assert shown[at:].split("\n")[0].rstrip("\r").endswith("recipe.json)"), shown  # nothing drawn into it
