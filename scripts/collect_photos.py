#!/usr/bin/env python3
"""Collect real photographs that can be obtained offline into one flat folder.

    python3 scripts/collect_photos.py --out /work/photos [--min-side 400]

Where the photos come from (see docs/data.md for the full table):

* the installed scikit-image wheel (``skimage/data/*``, only files shipped in
  the wheel, never the ones pooch downloads);
* Debian packages, fetched with ``apt-get download`` and unpacked with
  ``dpkg -x`` into a temporary folder. Nothing is installed on the system.
  This needs the Debian package registry (run ``apt-get update`` once first)
  and the ``apt-get``/``dpkg`` tools; a package that cannot be fetched is
  skipped with a warning.

Output:

* ``OUT/<source>__<name>.jpg|png``: 8-bit sRGB RGB photos, long edge at most
  ``--max-side`` (smaller files are copied byte for byte when they need no
  conversion);
* ``OUT/hdr/*.exr``: real HDR environment maps (CC0), copied unchanged,
  unless ``--no-hdr``;
* ``OUT/SOURCES.tsv``: one row per file: file, source package (+version),
  licence, licence status, attribution, original path, width, height.

``--make-samples DIR`` instead (re)builds the small sample photos bundled in
``src/deepexposure/samples/`` (see that folder's LICENSES.md): public-domain /
CC0 photos downscaled to at most 1024 px, plus "problem" versions darkened in
linear light with a smooth exposure gradient.

``--strict`` keeps only files whose licence is clearly stated per file
(drops the OpenCV sample images and the Middlebury stereo image, whose
provenance is not documented). The corpus is for local training and
evaluation; it is not meant to be committed or redistributed as a whole.
"""

from __future__ import annotations

import argparse
import bz2
import csv
import glob
import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

try:
    from PIL import Image
except ImportError:  # pragma: no cover - the project depends on Pillow
    sys.exit("collect_photos.py needs Pillow (pip install pillow)")

Image.MAX_IMAGE_PIXELS = None  # wallpapers are up to 6000x4000

CLEAR = "clear"
UNCLEAR = "unclear"


@dataclass
class Entry:
    """One photo (or glob that resolves to one photo) inside a source tree."""

    path: str  # relative to Source.base; may be a glob (largest match wins)
    licence: str = ""
    attribution: str = ""
    status: str = CLEAR
    name: str = ""  # output stem; default: file stem (or wallpaper dir name)


@dataclass
class Source:
    id: str
    kind: str  # "skimage" | "deb"
    package: str
    base: str  # folder inside the package (or module folder for skimage)
    entries: list[Entry] = field(default_factory=list)
    licence: str = ""  # default licence for entries without one
    status: str = CLEAR
    copyright_note: str = ""
    hdr: bool = False  # entries are HDR files copied to OUT/hdr
    plasma_metadata: bool = False  # read licence/author from metadata.json


E = Entry

SOURCES: list[Source] = [
    Source(
        id="skimage",
        kind="skimage",
        package="scikit-image",
        base="",
        copyright_note="licences from the docstrings of skimage.data.<name>()",
        entries=[
            E("astronaut.png", "Public domain (NASA)", "NASA; Eileen Collins"),
            E("coffee.png", "CC0-1.0", "Rachel Michetti (Pikolo Espresso Bar)"),
            E("chelsea.png", "CC0-1.0", "Stefan van der Walt"),
            E("rocket.jpg", "Public domain (SpaceX)", "SpaceX; DSCOVR launch"),
            E("motorcycle_left.png", "Middlebury 2014 stereo dataset (no explicit licence)",
              "Scharstein et al., Middlebury College", UNCLEAR),
        ],
    ),
    Source(
        id="plasma",
        kind="deb",
        package="plasma-workspace-wallpapers",
        base="usr/share/wallpapers",
        licence="LGPL-3.0 (metadata.json); Debian copyright: GPL-2+",
        plasma_metadata=True,
        entries=[
            E(f"{w}/contents/images/*", name=w)
            for w in ["BytheWater", "ColorfulCups", "DarkestHour",
                      "EveningGlow", "FallenLeaf", "Kite", "OneStandsOut", "Path",
                      "summer_1am"]
        ],
    ),
    Source(
        id="lomiri1604",
        kind="deb",
        package="lomiri-wallpapers-16.04",
        base="usr/share/backgrounds",
        copyright_note="per-file licences from debian/copyright",
        entries=[
            E("Bridge_by_Sander_Klootwijk.jpg", "CC-BY-SA-4.0", "Sander Klootwijk"),
            E("Dragonfly_by_Bolly.jpg", "CC-BY-SA-4.0", "Bolly"),
            E("Picture_0B_by_freespace.jpg", "CC-BY-4.0", 'Trevor "Freespace"'),
            E("Picture_1A_by_freespace.jpg", "CC-BY-4.0", 'Trevor "Freespace"'),
            E("Wine_by_Jakkub_Mede.jpg", "CC-BY-4.0", "Jakub Mede"),
            E("aitzgorri_by_Aitzol_Berasategi.jpg", "CC-BY-4.0", "Aitzol Berasategi"),
            E("analogpattern_by_Peter_Nerlich.jpg", "CC-BY-SA-4.0", "Peter Nerlich"),
            E("free_by_Peter_Nerlich.jpg", "CC-BY-SA-4.0", "Peter Nerlich"),
            E("friends_by_Aitzol_Berasategi.jpg", "CC-BY-4.0", "Aitzol Berasategi"),
            E("greentock_by_Peter_Nerlich.jpg", "CC-BY-SA-4.0", "Peter Nerlich"),
            E("life_by_Aitzol_Berasategi.jpg", "CC-BY-4.0", "Aitzol Berasategi"),
            E("picosdeeuropa_by_Aitzol_Berasategi.jpg", "CC-BY-4.0", "Aitzol Berasategi"),
            E("seeding_by_Clements_Engelhardt.jpg", "CC0-1.0", "Clemens Engelhardt"),
            E("sunset_by_Aitzol_Berasategi.jpg", "CC-BY-4.0", "Aitzol Berasategi"),
        ],
    ),
    Source(
        id="lomiri2004",
        kind="deb",
        package="lomiri-wallpapers-20.04",
        base="usr/share/backgrounds",
        copyright_note="per-file licences from debian/copyright",
        entries=[E("Kleiber_by_Lukas_Baubkus.jpg", "CC-BY-SA-3.0", "Lukas Baubkus")],
    ),
    Source(
        id="lxqt",
        kind="deb",
        package="lxqt-themes",
        base="usr/share/lxqt/wallpapers",
        licence="CC-BY-SA-3.0 (upstream wallpapers/License); Debian copyright: LGPL-2.1+",
        copyright_note="usr/share/lxqt/wallpapers/License",
        entries=[
            E("Butterfly-Kenneth-Wimer.jpg", attribution="Kenneth Wimer"),
            E("Valendas.png", attribution="LXQt Project Team"),
            E("after-the-rain.jpg", attribution="stefonarch"),
            E("appleflower.png", attribution="stefonarch"),
            E("beam.png", attribution="stefonarch"),
            E("butterfly.png", attribution="stefonarch"),
            E("cloud.png", attribution="LXQt Project Team"),
            E("drop.png", attribution="stefonarch"),
            E("flowers.png", attribution="stefonarch"),
            E("fog.jpg", attribution="stefonarch"),
            E("this-is-not-windows.jpg", attribution="stefonarch"),
        ],
    ),
    Source(
        id="mate",
        kind="deb",
        package="mate-backgrounds",
        base="usr/share/backgrounds/mate/nature",
        licence="GPL-2+",
        copyright_note="per-file copyright holders in debian/copyright",
        entries=[
            E("Aqua.jpg", attribution="Charles Barbin"),
            E("Blinds.jpg", attribution="Lennart Poettering, Andrea Cimitan"),
            E("Dune.jpg", attribution="Marco Cogoni, Hylke Bons"),
            E("FreshFlower.jpg", attribution="Jens Ansorg"),
            E("Garden.jpg", attribution="Charles Barbin"),
            E("GreenMeadow.jpg", attribution="Timothy Schellhase, Lapo Calamandrei"),
            E("LadyBird.jpg", attribution="Charles Barbin"),
            E("RainDrops.jpg", attribution="blackcombwhistler07"),
            E("Storm.jpg", attribution="Sergey Nazarov"),
            E("TwoWings.jpg", attribution="Charles Barbin, Hylke Bons"),
            E("Wood.jpg", attribution="Jean-François Fortin Tam"),
            E("YellowFlower.jpg", attribution="Charles Barbin"),
        ],
    ),
    Source(
        id="sklearn",
        kind="deb",
        package="python3-sklearn",
        base="usr/lib/python3/dist-packages/sklearn/datasets/images",
        licence="CC-BY-2.0",
        copyright_note="sklearn/datasets/images/README.txt",
        entries=[
            E("china.jpg", attribution="danielbuechele (Flickr)"),
            E("flower.jpg", attribution="vultilion (Flickr)"),
        ],
    ),
    Source(
        id="matplotlib",
        kind="deb",
        package="python-matplotlib-data",
        base="usr/share/matplotlib/mpl-data/sample_data",
        entries=[E("grace_hopper.jpg", "Public domain (US Navy photograph); shipped under the matplotlib licence",
                   "US Navy; Grace Hopper")],
    ),
    Source(
        id="scipy",
        kind="deb",
        package="python3-scipy",
        base="usr/lib/python3/dist-packages/scipy/misc",
        entries=[E("face.dat", "Public domain (public-domain-image.com, per scipy.misc.face docs)",
                   "raccoon-procyon-lotor.jpg", name="raccoon_face")],
    ),
    Source(
        id="opencv",
        kind="deb",
        package="opencv-doc",
        base="usr/share/doc/opencv-doc/examples",
        licence="Apache-2.0 AND BSD-3-Clause (Debian copyright 'Files: *'); image provenance undocumented",
        status=UNCLEAR,
        entries=[E(f"data/{n}") for n in [
            "aero1.jpg", "aloeL.jpg", "apple.jpg", "baboon.jpg", "board.jpg",
            "building.jpg", "butterfly.jpg", "chicky_512.png", "ela_original.jpg",
            "fruits.jpg", "graf1.png", "home.jpg", "leuvenA.jpg", "leuvenB.jpg",
            "messi5.jpg", "orange.jpg", "rubberwhale1.png", "squirrel_cls.jpg",
            "stuff.jpg",
        ]] + [E(f"text/scenetext0{i}.jpg") for i in range(1, 7)]
        + [E("alphamat/input_images/plant.jpg")],
    ),
    Source(
        id="blender",
        kind="deb",
        package="blender-data",
        base="usr/share/blender/datafiles/studiolights/world",
        licence="CC0-1.0",
        copyright_note="studiolights/world/license.txt (Greg Zaal, HDRI Haven)",
        hdr=True,
        entries=[E(f"{n}.exr", attribution="Greg Zaal (HDRI Haven / Poly Haven)") for n in [
            "city", "courtyard", "forest", "interior", "night", "studio",
            "sunrise", "sunset"]],
    ),
]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- fetching


def fetch_deb(package: str, cache: Path) -> tuple[Path, str] | None:
    """apt-get download PACKAGE into cache, dpkg -x it; return (root, version)."""
    debs = sorted(cache.glob(f"{package}_*.deb"))
    if not debs:
        try:
            subprocess.run(["apt-get", "download", package], cwd=cache, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        except FileNotFoundError:
            log(f"  ! apt-get not found: skipping {package}")
            return None
        except subprocess.CalledProcessError as exc:
            log(f"  ! apt-get download {package} failed ({exc.stderr.strip()[-200:]}); "
                "did you run 'apt-get update'? skipping")
            return None
        debs = sorted(cache.glob(f"{package}_*.deb"))
        if not debs:
            log(f"  ! no .deb for {package} after download; skipping")
            return None
    deb = debs[-1]
    root = cache / f"x_{package}"
    if not root.exists():
        tmp = cache / f"tmpx_{package}"
        shutil.rmtree(tmp, ignore_errors=True)
        subprocess.run(["dpkg", "-x", str(deb), str(tmp)], check=True)
        tmp.rename(root)
    version = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], check=True,
                             capture_output=True, text=True).stdout.strip()
    return root, version


def skimage_root() -> tuple[Path, str] | None:
    try:
        import skimage
    except ImportError:
        log("  ! scikit-image not installed: skipping")
        return None
    return Path(skimage.__file__).parent / "data", skimage.__version__


# ------------------------------------------------------------------ images


def load_rgb(path: Path) -> Image.Image:
    if path.name == "face.dat":  # scipy.misc.face: bz2'd raw 768x1024x3 uint8
        raw = bz2.decompress(path.read_bytes())
        return Image.frombytes("RGB", (1024, 768), raw)
    im = Image.open(path)
    im.load()
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        bg = Image.new("RGB", im.size, (255, 255, 255))
        bg.paste(im, mask=im.getchannel("A"))
        return bg
    return im.convert("RGB") if im.mode != "RGB" else im


def is_grayscale(im: Image.Image) -> bool:
    small = im.resize((64, 64))
    r, g, b = small.split()
    return r.tobytes() == g.tobytes() == b.tobytes()


def resolve(root: Path, pattern: str) -> Path | None:
    matches = [Path(p) for p in glob.glob(str(root / pattern))]
    matches = [p for p in matches if p.is_file()]
    if not matches:
        return None
    if len(matches) == 1:
        return matches[0]

    def area(p: Path) -> tuple[int, int, str]:
        with Image.open(p) as im:
            return (im.size[0] * im.size[1], -len(p.name), p.name)

    return max(matches, key=area)


def plasma_info(wall_dir: Path) -> tuple[str, str]:
    meta = wall_dir / "metadata.json"
    if not meta.exists():
        return "", ""
    data = json.loads(meta.read_text(encoding="utf-8")).get("KPlugin", {})
    authors = ", ".join(a.get("Name", "") for a in data.get("Authors", []))
    return data.get("License", ""), authors


# ----------------------------------------------------------------- samples

#: Where each bundled original comes from: output name -> (source id, file in the source base).
#: The names, and the exposure ramps of the problem samples, are defined once in
#: ``deepexposure.samples`` (ORIGINAL_SAMPLES, PROBLEM_SAMPLES).
SAMPLE_ORIGINS = {
    "astronaut.jpg": ("skimage", "astronaut.png"),
    "coffee.jpg": ("skimage", "coffee.png"),
    "chelsea.jpg": ("skimage", "chelsea.png"),
    "dandelions.jpg": ("lomiri1604", "seeding_by_Clements_Engelhardt.jpg"),
}


def _ramp_ev(h: int, w: int, axis: str, ev_start: float, ev_end: float):
    """Exposure map (H, W) in EV, varying linearly along ``axis`` ("x" or "y")."""
    import numpy as np

    if axis == "x":
        t = np.linspace(0.0, 1.0, w, dtype=np.float32)[None, :].repeat(h, 0)
    else:
        t = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None].repeat(w, 1)
    return ev_start + (ev_end - ev_start) * t


SAMPLE_MAX_SIDE = 1024
SAMPLE_QUALITY = 90


def make_samples(dest: Path, cache: Path) -> None:
    """Write the bundled sample JPEGs into ``dest`` (uses deepexposure.color)."""
    import numpy as np
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from deepexposure.io import tensor_to_uint8, uint8_to_tensor
    from deepexposure.samples import ORIGINAL_SAMPLES, PROBLEM_SAMPLES
    from deepexposure.synth import apply_ev_field

    assert set(SAMPLE_ORIGINS) == set(ORIGINAL_SAMPLES), "update SAMPLE_ORIGINS"

    by_id = {s.id: s for s in SOURCES}
    roots: dict[str, Path] = {}
    dest.mkdir(parents=True, exist_ok=True)
    made: dict[str, Image.Image] = {}
    for name, (sid, rel) in SAMPLE_ORIGINS.items():
        src = by_id[sid]
        if sid not in roots:
            got = skimage_root() if src.kind == "skimage" else fetch_deb(src.package, cache)
            if got is None:
                raise SystemExit(f"cannot build samples: source {sid} unavailable")
            roots[sid] = got[0] / src.base
        im = load_rgb(roots[sid] / rel)
        if max(im.size) > SAMPLE_MAX_SIDE:
            s = SAMPLE_MAX_SIDE / max(im.size)
            im = im.resize((round(im.size[0] * s), round(im.size[1] * s)),
                           Image.Resampling.LANCZOS, reducing_gap=3.0)
        im.save(dest / name, quality=SAMPLE_QUALITY, optimize=True)
        made[name] = im
        log(f"  + {name} {im.size[0]}x{im.size[1]}")
    for name, (orig, axis, ev0, ev1) in PROBLEM_SAMPLES.items():
        # lin_out = clip(srgb_to_linear(img) * 2 ** ev(x, y), 0, 1), back to sRGB (synth.apply_ev_field)
        im = made[orig]
        w, h = im.size
        ev = torch.from_numpy(_ramp_ev(h, w, axis, ev0, ev1))
        out8 = tensor_to_uint8(apply_ev_field(uint8_to_tensor(np.asarray(im)), ev))
        Image.fromarray(out8, "RGB").save(dest / name, quality=SAMPLE_QUALITY, optimize=True)
        log(f"  + {name} {w}x{h} (EV {ev0:+.1f} -> {ev1:+.1f} along {axis})")


# -------------------------------------------------------------------- main


def collect(out: Path, min_side: int, max_side: int, strict: bool, hdr: bool,
            cache: Path, quality: int) -> list[dict]:
    rows: list[dict] = []
    out.mkdir(parents=True, exist_ok=True)
    for src in SOURCES:
        if src.hdr and not hdr:
            continue
        if strict and src.status == UNCLEAR:
            log(f"[{src.id}] skipped (--strict: licence provenance unclear)")
            continue
        log(f"[{src.id}] {src.package}")
        got = skimage_root() if src.kind == "skimage" else fetch_deb(src.package, cache)
        if got is None:
            continue
        root, version = got
        base = root / src.base
        for ent in src.entries:
            status = ent.status if ent.status != CLEAR else src.status
            if strict and status == UNCLEAR:
                continue
            path = resolve(base, ent.path)
            if path is None:
                log(f"  ! missing {ent.path}")
                continue
            licence, attribution = ent.licence or src.licence, ent.attribution
            if src.plasma_metadata:
                lic, auth = plasma_info(base / ent.path.split("/")[0])
                licence = f"{lic} (metadata.json); Debian copyright: GPL-2+" if lic else licence
                attribution = attribution or auth
            stem = ent.name or Path(ent.path).stem
            orig = path.relative_to(root).as_posix()
            if src.kind == "deb":
                orig = "/" + orig
            row = {"source_package": f"{src.package} {version}", "licence": licence,
                   "licence_status": status, "attribution": attribution,
                   "original_path": orig}
            if src.hdr:
                dest = out / "hdr" / f"{src.id}__{path.name}"
                dest.parent.mkdir(exist_ok=True)
                shutil.copyfile(path, dest)
                rows.append({"file": dest.relative_to(out).as_posix(), **row,
                             "width": "", "height": ""})
                continue
            im = load_rgb(path)
            w, h = im.size
            if min(w, h) < min_side:
                log(f"  - {stem}: {w}x{h} below --min-side {min_side}")
                continue
            if is_grayscale(im):
                log(f"  - {stem}: grayscale, skipped")
                continue
            ext = ".png" if path.suffix.lower() == ".png" else ".jpg"
            dest = out / f"{src.id}__{stem}{ext}"
            untouched = (max_side <= 0 or max(w, h) <= max_side)
            raw_ok = path.suffix.lower() in (".jpg", ".jpeg", ".png")
            if untouched and raw_ok and Image.open(path).mode == "RGB":
                shutil.copyfile(path, dest)
            else:
                if not untouched:
                    s = max_side / max(w, h)
                    im = im.resize((max(1, round(w * s)), max(1, round(h * s))),
                                   Image.Resampling.LANCZOS, reducing_gap=3.0)
                if ext == ".png":
                    im.save(dest, optimize=False, compress_level=6)
                else:
                    im.save(dest, quality=quality, subsampling=0, optimize=True)
            rows.append({"file": dest.name, **row, "width": im.size[0], "height": im.size[1]})
            log(f"  + {dest.name} ({im.size[0]}x{im.size[1]})")
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("/work/photos"),
                    help="output folder (created; existing files with the same names are replaced)")
    ap.add_argument("--min-side", type=int, default=400,
                    help="drop photos whose short side is below this (px)")
    ap.add_argument("--max-side", type=int, default=2048,
                    help="downscale so the long side is at most this (px); 0 keeps size")
    ap.add_argument("--quality", type=int, default=95, help="JPEG quality for re-encoded files")
    ap.add_argument("--strict", action="store_true",
                    help="only files with a clearly documented per-file licence")
    ap.add_argument("--no-hdr", action="store_true", help="skip the CC0 EXR environment maps")
    ap.add_argument("--make-samples", type=Path, default=None, metavar="DIR",
                    help="instead of collecting, rebuild the bundled samples into DIR")
    ap.add_argument("--cache", type=Path, default=None,
                    help="keep downloaded .debs here (default: a temp dir, removed after)")
    args = ap.parse_args(argv)

    tmp = None
    if args.cache is None:
        tmp = tempfile.mkdtemp(prefix="collect_photos_")
        cache = Path(tmp)
    else:
        cache = args.cache
        cache.mkdir(parents=True, exist_ok=True)
    try:
        if args.make_samples is not None:
            make_samples(args.make_samples, cache.resolve())
            return 0
        rows = collect(args.out, args.min_side, args.max_side, args.strict,
                       not args.no_hdr, cache.resolve(), args.quality)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)

    fields = ["file", "source_package", "licence", "licence_status", "attribution",
              "original_path", "width", "height"]
    with open(args.out / "SOURCES.tsv", "w", newline="", encoding="utf-8") as fh:
        wr = csv.DictWriter(fh, fieldnames=fields, delimiter="\t", lineterminator="\n")
        wr.writeheader()
        wr.writerows(rows)
    n_photo = sum(1 for r in rows if not r["file"].startswith("hdr/"))
    n_clear = sum(1 for r in rows if not r["file"].startswith("hdr/")
                  and r["licence_status"] == CLEAR)
    log(f"done: {n_photo} photos ({n_clear} with clear licence), "
        f"{len(rows) - n_photo} HDR maps -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
