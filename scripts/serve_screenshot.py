#!/usr/bin/env python3
"""Screenshot of ``deepexposure serve`` for the docs: ``docs/serve.png``.

    python scripts/serve_screenshot.py [--out docs/serve.png]

Starts the server on 127.0.0.1 in this process (temporary work folder), opens it in Debian's
headless Chromium through Playwright (``executable_path=/usr/bin/chromium``; no browser download),
loads a bundled sample, retouches it with the default DeepExposure model, shows the regions and
moves region 0's slider, then saves the page.
"""

from __future__ import annotations

import argparse
import socket
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "serve.png")
    ap.add_argument("--photo", type=Path, default=ROOT / "src/deepexposure/samples/dandelions_dark_foreground.jpg")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    a = ap.parse_args()

    import uvicorn
    from playwright.sync_api import sync_playwright

    from deepexposure.serve import ServeConfig, create_app

    with tempfile.TemporaryDirectory(prefix="deepexposure-shot-") as work:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        srv = uvicorn.Server(uvicorn.Config(create_app(ServeConfig(work_dir=Path(work))), host="127.0.0.1", port=port,
                                            log_level="warning"))
        threading.Thread(target=srv.run, daemon=True).start()
        while not srv.started:
            time.sleep(0.05)
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=a.chromium, args=ARGS)
            pg = b.new_page(viewport={"width": 1440, "height": 860})
            pg.set_default_timeout(120_000)
            pg.goto(f"http://127.0.0.1:{port}/")
            pg.wait_for_selector("body[data-ready='1']")
            pg.set_input_files("#files", [str(a.photo), str(ROOT / "src/deepexposure/samples/coffee_underexposed.jpg")])
            pg.wait_for_function("() => document.querySelectorAll('#photos li').length === 2")
            pg.click("#retouch")
            pg.wait_for_selector("#editor input[name='ev-0-0']")
            slider = pg.locator("#editor input[name='ev-0-0']")
            slider.focus()
            for _ in range(10):
                slider.press("ArrowRight")
            time.sleep(1.0)
            pg.wait_for_function("() => document.getElementById('after').complete")
            pg.wait_for_function("() => document.getElementById('timing').textContent.length > 0")
            pg.fill("#split", "35")
            pg.dispatch_event("#split", "input")
            pg.evaluate("() => document.getElementById('right').scrollTo(0, 0)")
            pg.hover("#editor input[name='ev-0-1']")  # highlights region 1 over the photo
            time.sleep(0.5)
            a.out.parent.mkdir(parents=True, exist_ok=True)
            pg.screenshot(path=str(a.out))
            b.close()
        srv.should_exit = True
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
