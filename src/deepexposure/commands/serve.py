"""``deepexposure serve``: a local web page to retouch photos, edit region by region and export.

Open the printed address in a browser. Everything (page, scripts, styles) is served from the
package; nothing is fetched from the internet. Uploads, previews and exports live in the work
folder only (a fresh temporary folder, deleted on exit, unless ``--work-dir`` is given).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from ._common import UsageError


def register(sub) -> None:
    p = sub.add_parser("serve", help="local web page: drop photos, edit region by region, export", description=__doc__)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    p.add_argument("--work-dir", type=Path, default=None,
                   help="folder for uploads, previews and exports (default: a temporary folder removed on exit)")
    p.add_argument("--max-upload-mb", type=int, default=300, help="largest upload request in MB (default 300)")
    p.add_argument("--max-pixels", type=int, default=100_000_000, help="largest photo in pixels (default 100 MP)")
    p.add_argument("--preview-size", type=int, default=1024, help="long edge of the editing preview (default 1024)")
    p.add_argument("--workers", type=int, default=2, help="interactive computations at once (default 2)")
    p.set_defaults(func=run)


def run(args) -> int:
    try:
        import uvicorn

        from ..serve.app import ServeConfig, create_app
    except ModuleNotFoundError as e:
        raise UsageError(f"`serve` needs the optional web packages ({e.name} is missing): pip install 'deepexposure[serve]'") from None
    if not 0 < args.port < 65536:
        raise UsageError(f"--port must be 1..65535, got {args.port}")
    if args.max_upload_mb < 1 or args.max_pixels < 64 or not 64 <= args.preview_size <= 8192 or args.workers < 1:
        raise UsageError("--max-upload-mb, --max-pixels, --preview-size and --workers must be positive (preview 64..8192)")
    temp = args.work_dir is None
    work = Path(tempfile.mkdtemp(prefix="deepexposure-serve-")) if temp else args.work_dir
    try:
        work.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"{work}: cannot create the work folder ({e.strerror or e})") from None
    hosts = None
    if args.host in ("127.0.0.1", "localhost", "::1"):
        hosts = ["127.0.0.1", "localhost", "[::1]"]  # refuse other Host headers (DNS rebinding)
    cfg = ServeConfig(work_dir=work, max_upload_bytes=args.max_upload_mb * 2**20, max_pixels=args.max_pixels,
                      preview_size=args.preview_size, workers=args.workers, allowed_hosts=hosts)
    app = create_app(cfg)
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"deepexposure serve: open http://{shown}:{args.port}/  (work folder {work}; Ctrl+C stops)", flush=True)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print("warning: listening beyond this machine; anyone who can reach the port can upload photos", flush=True)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    finally:
        if temp:
            shutil.rmtree(work, ignore_errors=True)
    return 0
