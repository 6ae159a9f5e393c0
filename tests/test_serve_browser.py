"""``deepexposure serve`` in a real browser: Debian's Chromium, headless, driven by Playwright.

Playwright's own browser download is never used: the system Chromium (``apt-get install chromium``)
is launched through ``executable_path``. Without it these tests are skipped with the reason.
"""

from __future__ import annotations

import io
import json
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright's Python package is not installed (pip install playwright)")

CHROMIUM = next((p for p in (shutil.which("chromium"), "/usr/bin/chromium", shutil.which("chromium-browser")) if p and Path(p).exists()), None)
if CHROMIUM is None:
    pytest.skip("no system Chromium (Debian: apt-get install chromium); the browser tests need it", allow_module_level=True)

from PIL import Image  # noqa: E402

from deepexposure.serve import ServeConfig, create_app  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[1] / "src" / "deepexposure" / "samples"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A real ``uvicorn`` server on 127.0.0.1 in a thread; yields ``(base_url, work_dir)``."""
    import uvicorn

    work = tmp_path_factory.mktemp("serve-browser")
    app = create_app(ServeConfig(work_dir=work, preview_size=512, allowed_hosts=["127.0.0.1", "localhost"]))
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    th = threading.Thread(target=srv.run, daemon=True)
    th.start()
    t0 = time.monotonic()
    while not srv.started:
        assert time.monotonic() - t0 < 30, "the server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", work
    srv.should_exit = True
    th.join(10)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, server):
    base, _ = server
    ctx = browser.new_context(viewport={"width": 1400, "height": 900}, accept_downloads=True)
    pg = ctx.new_page()
    problems: list[str] = []
    pg.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    pg.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
          if m.type == "error" and "Failed to load resource" not in m.text else None)  # named by the response hook
    pg.on("response", lambda r: problems.append(f"HTTP {r.status} for {r.url}") if r.status >= 400 else None)
    pg.on("request", lambda r: problems.append(f"request outside the server: {r.url}")
          if not r.url.startswith((base, "blob:", "data:")) else None)
    pg.set_default_timeout(60_000)
    pg.goto(base + "/")
    pg.wait_for_selector("body[data-ready='1']")
    pg.problems = problems  # type: ignore[attr-defined]
    yield pg
    ctx.close()


def mean_of_after(pg) -> float:
    """Mean pixel value of the retouched preview as the browser shows it."""
    return pg.evaluate(
        """() => { const im = document.getElementById('after');
                   const c = document.createElement('canvas'); c.width = im.naturalWidth; c.height = im.naturalHeight;
                   const x = c.getContext('2d'); x.drawImage(im, 0, 0);
                   const d = x.getImageData(0, 0, c.width, c.height).data; let s = 0;
                   for (let i = 0; i < d.length; i += 4) s += d[i] + d[i + 1] + d[i + 2];
                   return s / (3 * d.length / 4); }"""
    )


def wait_renders(pg, n: int) -> None:
    pg.wait_for_function(
        "n => { const im = document.getElementById('after'); return Number(im.dataset.renders) >= n && im.complete && im.naturalWidth > 0; }",
        arg=n,
    )


def test_retouch_edit_region_export(page, server, tmp_path):
    base, work = server
    pg = page
    pg.set_input_files("#files", str(SAMPLES / "coffee_underexposed.jpg"))
    pg.wait_for_selector("#photos li")
    assert pg.is_visible("#stage") and pg.inner_text("#photos li .name") == "coffee_underexposed.jpg"

    pg.select_option("#method", "deepexposure")
    pg.click("#retouch")
    pg.wait_for_selector("#editor input[name='ev-0-0']")
    wait_renders(pg, 1)
    labels = pg.inner_text("#editor")
    assert "exposure chosen for region 0, fused" in labels
    n_regions = pg.locator("#editor input[name^='ev-0-']").count()
    assert n_regions >= 2
    assert pg.locator("#explain table tr").count() == n_regions + 1  # the segments table

    # the regions drawn over the photo
    pg.check("#show-regions")
    painted = pg.evaluate("""() => { const c = document.getElementById('overlay');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;
        for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n / (d.length / 4); }""")
    assert painted > 0.5

    # move region 0's slider (keyboard, as a user would): the preview gets brighter
    before = mean_of_after(pg)
    renders = int(pg.get_attribute("#after", "data-renders"))
    slider = pg.locator("#editor input[name='ev-0-0']")
    slider.focus()
    slider.press("End")  # the slider's maximum, +5 EV
    wait_renders(pg, renders + 1)
    after = mean_of_after(pg)
    assert after > before + 1.0, (before, after)
    assert "round trip" in pg.inner_text("#timing")

    # export full resolution PNG and its recipe
    pg.select_option("#format", "png")
    pg.click("#export")
    pg.wait_for_selector("#downloads a.export-file")
    with pg.expect_download() as dl:
        pg.click("#downloads a.export-file")
    out = tmp_path / dl.value.suggested_filename
    dl.value.save_as(out)
    assert out.name == "coffee_underexposed.png"
    with Image.open(out) as im:
        assert im.size == (600, 400) and im.format == "PNG"
    with pg.expect_download() as dl2:
        pg.click("#downloads a.export-recipe")
    rp = tmp_path / "r.json"
    dl2.value.save_as(rp)
    recipe = json.loads(rp.read_text())
    assert recipe["ops"][0]["evs"][0] == 5.0
    assert recipe["image"] == {"width": 600, "height": 400, "source": "coffee_underexposed.jpg"}
    # the exported photo is what `deepexposure apply` makes of that recipe
    from deepexposure.io import read_image
    from deepexposure.recipe import Recipe, render

    want = render(Recipe.from_dict(recipe), read_image(SAMPLES / "coffee_underexposed.jpg").img_srgb)
    assert (read_image(out).img_srgb - want).abs().max() <= 1 / 255 + 1e-6

    # load that recipe and apply it to another photo
    pg.set_input_files("#files", str(SAMPLES / "dandelions_dark_foreground.jpg"))
    pg.wait_for_function("() => document.querySelectorAll('#photos li').length === 2")
    pg.click("#photos li:nth-child(2)")
    pg.wait_for_function("() => document.querySelector('#photos li:nth-child(2)').classList.contains('current')")
    pg.set_input_files("#recipe-file", str(rp))
    pg.wait_for_function("() => !document.getElementById('apply-recipe').disabled")
    assert "r.json" in pg.inner_text("#loaded-recipe")
    pg.click("#apply-recipe")
    pg.wait_for_function("() => document.getElementById('editor').textContent.includes('Recipe loaded from coffee_underexposed.jpg')")
    assert pg.locator("#editor input[name='ev-0-0']").input_value() == "5"
    assert not pg.problems, pg.problems  # type: ignore[attr-defined]
    assert all(str(f.resolve()).startswith(str(work.resolve())) for f in work.rglob("*"))


def test_whitebox_steps_are_an_editable_list(page):
    pg = page
    pg.set_input_files("#files", str(SAMPLES / "chelsea.jpg"))
    pg.wait_for_selector("#photos li")
    pg.select_option("#method", "exposure")
    pg.click("#retouch")
    pg.wait_for_selector("#editor .op h3")
    wait_renders(pg, 1)
    steps = pg.locator("#editor .op h3").all_inner_texts()
    assert len(steps) >= 2 and all(s.startswith("Step ") for s in steps)
    # add a strong exposure step: the preview brightens
    before = mean_of_after(pg)
    renders = int(pg.get_attribute("#after", "data-renders"))
    pg.select_option("#editor select", "exposure")
    pg.click("#editor button:text('add step')")
    last = pg.locator("#editor .op").last.locator("input[type=range]")
    last.focus()
    last.press("End")  # +3.5 EV
    pg.wait_for_function("n => Number(document.getElementById('after').dataset.renders) >= n && document.getElementById('after').complete",
                         arg=renders + 2)
    time.sleep(0.3)
    wait_renders(pg, renders + 2)
    assert mean_of_after(pg) > before + 5
    # remove the first step
    pg.locator("#editor .op").first.locator("button:text('remove')").click()
    assert pg.locator("#editor .op h3").count() == len(steps)
    # the explain sheet: one panel per step
    pg.click("#explain-sheet")
    pg.wait_for_function("() => document.getElementById('sheet').naturalWidth > 0")
    assert pg.evaluate("() => document.getElementById('sheet').naturalWidth") > 320 * len(steps)
    assert not pg.problems, pg.problems  # type: ignore[attr-defined]


def test_bad_file_shows_one_line_message(page, tmp_path):
    pg = page
    bad = tmp_path / "holiday.jpg"
    bad.write_bytes(b"this is not a photo at all\n" * 10)
    pg.set_input_files("#files", str(bad))
    pg.wait_for_selector("#message:not([hidden])")
    msg = pg.inner_text("#message")
    assert msg.startswith("holiday.jpg:") and "not JPEG, PNG, WebP or TIFF" in msg, msg
    assert "\n" not in msg and "Traceback" not in msg and "/tmp" not in msg
    assert pg.locator("#photos li").count() == 0
    trunc = tmp_path / "cut.png"
    buf = io.BytesIO()
    Image.new("RGB", (300, 200), (9, 9, 9)).save(buf, "PNG")
    trunc.write_bytes(buf.getvalue()[:120])
    pg.set_input_files("#files", str(trunc))
    pg.wait_for_function("() => document.getElementById('message').textContent.startsWith('cut.png:')")
    assert pg.locator("#photos li").count() == 0


def test_batch_queue_with_progress(page):
    pg = page
    pg.set_input_files("#files", [str(SAMPLES / "astronaut.jpg"), str(SAMPLES / "coffee.jpg"), str(SAMPLES / "chelsea.jpg")])
    pg.wait_for_function("() => document.querySelectorAll('#photos li').length === 3")
    pg.select_option("#method", "fusion")
    pg.fill("#ev", "-1,0,1")
    pg.click("#retouch-all")
    pg.wait_for_selector("#queue li.job")
    pg.wait_for_function("() => document.querySelector('#queue li.job').textContent.includes('retouch · 3/3 · done')")
    assert pg.locator("#photos li .state").all_inner_texts() == ["✓", "✓", "✓"]
    assert pg.evaluate("() => document.querySelector('#queue progress').value") == 3
    pg.select_option("#format", "jpg")
    pg.fill("#quality", "80")
    pg.click("#export-all")
    pg.wait_for_function("() => document.querySelectorAll('#downloads a.export-file').length === 3")
    names = sorted(pg.locator("#downloads a.export-file").all_inner_texts())
    assert names == ["astronaut.jpg", "chelsea.jpg", "coffee.jpg"]
    assert "export · 3/3 · done" in pg.inner_text("#queue")
    assert not pg.problems, pg.problems  # type: ignore[attr-defined]
