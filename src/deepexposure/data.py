"""Datasets: unpaired folders for training, paired folders for scoring, MIT-Adobe FiveK, a cache.

Folder kinds
------------
- **Unpaired** (training; both papers train without pairs): ``--inputs DIR`` (photos to retouch) and
  ``--targets DIR`` (photos in the wanted style), any formats :func:`deepexposure.io.read_image`
  reads. :class:`UnpairedFolders` loads both once as ``(N, 3, 64, 64)`` thumbnails.
- **Paired** (scoring, ``deepexposure eval --paired DIR``): ``DIR/input/`` and ``DIR/reference/``
  (also accepted: ``inputs``; ``references``, ``target``, ``targets``, ``expected``, ``gt``) whose
  files are matched by stem, any extensions (``input/IMG_1.CR2`` <-> ``reference/IMG_1.jpg``).
  :class:`PairedFolder`.
- **MIT-Adobe FiveK** (Bychkovsky et al. 2011), the papers' protocol, :class:`FiveK` and
  :func:`fivek_split`: 2,000 inputs (part 1) / 2,000 expert-C photos (part 2) / 1,000 test inputs
  with their expert-C versions as references (part 3), pairwise disjoint, from a fixed seed or from
  the Exposure authors' partition files ``FiveK_train1.txt``, ``FiveK_train2.txt``,
  ``FiveK_test.txt``; every image scaled to 500 px on the long edge. Layouts found under ``ROOT``
  (folder names case-insensitive; photos matched by their FiveK number 1..5000, read from names
  like ``a0001-jmac_DSC1459.dng``, ``a0001.jpg``, ``0001.png`` or ``1.tif``):

  - inputs: ``raw_photos/HQa1to700/photos/*.dng`` (the official download, searched recursively),
    ``raw/``, ``input/``, ``inputs/``, ``original/``, ``InputAsShotZeroed/``, ``InputZeroed/``;
  - expert X in {A..E}: ``expertX/``, ``expert_X/``, ``Expert-X/``, ``X/`` (e.g. ``c/``),
    ``expertX_tif/`` ... -- any folder whose name, lowercased without ``-_ `` and a trailing
    ``tif/jpg/png`` word, is ``expertx`` or ``x``.

Cache
-----
:func:`prepare_cache` stores, per source photo and size, a 16-bit PNG written by
:mod:`deepexposure.io`: size 64 is the agents' square thumbnail (:func:`make_thumbnail`), other
sizes are long-edge copies (:func:`resize_long_edge`, never upscaled). Files are named by a hash of
``(absolute path, mtime_ns, file size, size)``, so an edited photo is re-read. Training then decodes
tiny PNGs instead of full photos.

Resizing helpers (:func:`resize_long_edge`, :func:`resize_exact`, :func:`make_thumbnail`) live in
:mod:`deepexposure.resize` and are re-exported here.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .resize import PAPER_LONG_EDGE, THUMBNAIL_SIZE, make_thumbnail, resize_exact, resize_long_edge

__all__ = [
    "resize_long_edge",
    "resize_exact",
    "make_thumbnail",
    "DatasetError",
    "cache_path",
    "prepare_cache",
    "load_image_at",
    "ThumbnailDataset",
    "UnpairedFolders",
    "load_references",
    "Pair",
    "PairedFolder",
    "FIVEK_COUNTS",
    "FIVEK_PARTITION_FILES",
    "fivek_id",
    "FiveKSplit",
    "fivek_split",
    "FiveK",
    "export_fivek",
]

CACHE_VERSION = 1


class DatasetError(ValueError):
    """A dataset that cannot be used as asked; ``str()`` is one line naming the folder."""


# ----------------------------------------------------------------------------------------------
# loading and caching


def _list_images(folder: Path) -> list[Path]:
    from .io import list_images

    return sorted(list_images([Path(folder)]))


def cache_path(path: Path, size: int, cache_dir: Path, *, square: bool = False) -> Path:
    """Where the cached copy of ``path`` at ``size`` lives (hash of path, mtime, byte size, size, kind)."""
    path = Path(path).resolve()
    st = path.stat()
    kind = "sq" if square else "le"
    key = f"v{CACHE_VERSION}|{path}|{st.st_mtime_ns}|{st.st_size}|{kind}{int(size)}"
    digest = hashlib.sha1(key.encode("utf-8")).hexdigest()[:20]
    return Path(cache_dir) / f"{digest}_{kind}{int(size)}.png"


def _derive(img_srgb: torch.Tensor, size: int, square: bool) -> torch.Tensor:
    if square:
        return make_thumbnail(img_srgb, size)
    return resize_long_edge(img_srgb, size, upscale=False).clamp(0.0, 1.0)


def load_image_at(path: Path, size: int, cache_dir: Path | None = None, *, square: bool = False) -> torch.Tensor:
    """Read ``path`` at ``size``: a ``size x size`` thumbnail (``square``) or a long-edge copy.

    With ``cache_dir`` the result is read from / written to the cache (16-bit PNG), and is rounded to
    16 bits on a cache miss too, so a first and a second read (e.g. a training run and its
    ``--resume``) give the same values.

    Returns:
        ``(1, 3, h, w)`` sRGB float32 in [0, 1].
    Raises:
        deepexposure.io.ImageReadError: unreadable photo.
    """
    from .io import ImageReadError, read_image, write_image

    if cache_dir is not None:
        cp = cache_path(path, size, cache_dir, square=square)
        if cp.is_file():
            try:
                return read_image(cp).img_srgb
            except ImageReadError:
                pass  # a damaged cache entry: rebuild it
    img = _derive(read_image(path).img_srgb, size, square)
    if cache_dir is not None:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        write_image(cp, img, bit_depth=16, overwrite=True)
        img = torch.round(img.clamp(0.0, 1.0) * 65535.0) / 65535.0  # what the cache entry holds
    return img


def _load_many(paths: Sequence[Path], size: int, cache_dir: Path | None, progress: bool, desc: str, square: bool):
    from .io import ImageReadError

    imgs, kept, skipped = [], [], []
    it: Iterable[Path] = paths
    if progress:
        from tqdm import tqdm

        it = tqdm(paths, desc=desc, unit="img")
    for p in it:
        try:
            imgs.append(load_image_at(p, size, cache_dir, square=square))
            kept.append(Path(p))
        except (ImageReadError, OSError) as e:
            msg = str(e)
            skipped.append((Path(p), msg.split(": ", 1)[1] if msg.startswith(str(p)) else msg))
    return imgs, kept, skipped


def prepare_cache(
    paths: Sequence[Path],
    cache_dir: Path,
    sizes: Sequence[int] = (THUMBNAIL_SIZE, PAPER_LONG_EDGE),
    *,
    square_sizes: Sequence[int] = (THUMBNAIL_SIZE,),
    progress: bool = False,
) -> list[tuple[Path, str]]:
    """Fill the cache for every photo and size (decoding each photo at most once).

    Sizes in ``square_sizes`` are stored as square thumbnails (:func:`make_thumbnail`), the others as
    long-edge copies (:func:`resize_long_edge`, not upscaled).

    Returns:
        ``[(path, reason), ...]`` for photos that could not be read (they are skipped).
    """
    from .io import ImageReadError, read_image, write_image

    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    skipped: list[tuple[Path, str]] = []
    it: Iterable[Path] = paths
    if progress:
        from tqdm import tqdm

        it = tqdm(paths, desc="cache", unit="img")
    for p in it:
        try:
            todo = [(s, sq, cache_path(p, s, cache_dir, square=sq)) for s in sizes for sq in [s in square_sizes]]
            todo = [t for t in todo if not t[2].is_file()]
            if not todo:
                continue
            img = read_image(p).img_srgb
            for s, sq, cp in todo:
                write_image(cp, _derive(img, s, sq), bit_depth=16, overwrite=True)
        except (ImageReadError, OSError) as e:
            skipped.append((Path(p), str(e)))
    return skipped


class ThumbnailDataset(torch.utils.data.Dataset):
    """Photos as ``(3, size, size)`` thumbnails in [0, 1] sRGB, all loaded at construction.

    Unreadable photos are skipped and listed in :attr:`skipped` as ``(path, reason)``.

    Args:
        paths: photo files.
        size: thumbnail side (64, the agents' input).
        cache_dir: optional :func:`prepare_cache` folder.
        min_images: raise :class:`DatasetError` when fewer readable photos remain.
        name: what to call the set in messages.
    """

    def __init__(
        self,
        paths: Sequence[Path],
        size: int = THUMBNAIL_SIZE,
        cache_dir: Path | None = None,
        *,
        min_images: int = 1,
        name: str = "photos",
        progress: bool = False,
    ) -> None:
        imgs, self.paths, self.skipped = _load_many(list(paths), size, cache_dir, progress, name, square=True)
        if len(imgs) < min_images:
            why = f" ({len(self.skipped)} unreadable)" if self.skipped else ""
            raise DatasetError(f"{name}: {len(imgs)} readable photos{why}, need at least {min_images}")
        self.size = size
        self.images = torch.cat(imgs, dim=0) if imgs else torch.zeros(0, 3, size, size)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i]



def _folder_photos(folder: Path, what: str) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: {what} folder does not exist")
    return _list_images(folder)


class UnpairedFolders:
    """Unpaired training data: input photos and target-style photos, as 64 x 64 thumbnails.

    Attributes:
        inputs: ``(N_in, 3, size, size)`` float32 sRGB in [0, 1].
        targets: ``(N_tgt, 3, size, size)``.
        input_paths, target_paths: the files behind each row.
        skipped: ``[(path, reason), ...]`` unreadable files (reported, not fatal).
    Raises:
        DatasetError: a folder is missing or holds fewer than ``min_images`` readable photos.
    """

    def __init__(
        self,
        inputs_dir: Path,
        targets_dir: Path,
        size: int = THUMBNAIL_SIZE,
        cache_dir: Path | None = None,
        *,
        min_images: int = 1,
        progress: bool = False,
    ) -> None:
        ins = ThumbnailDataset(_folder_photos(inputs_dir, "inputs"), size, cache_dir, min_images=min_images, name=f"inputs {inputs_dir}", progress=progress)
        tgs = ThumbnailDataset(_folder_photos(targets_dir, "targets"), size, cache_dir, min_images=min_images, name=f"targets {targets_dir}", progress=progress)
        self.inputs, self.targets = ins.images, tgs.images
        self.input_paths, self.target_paths = ins.paths, tgs.paths
        self.skipped = ins.skipped + tgs.skipped


def load_references(
    input_paths: Sequence[Path], reference_dir: Path, size: int = THUMBNAIL_SIZE, cache_dir: Path | None = None
) -> torch.Tensor:
    """Thumbnails of each input's reference, found by file stem in ``reference_dir``.

    For ``deepexposure train --references``: row ``i`` is the reference of ``input_paths[i]``, made
    the same way as the input thumbnails (so a pixel-aligned reference gives a pixel-aligned
    thumbnail). A synth folder's ``reference/`` or a FiveK expert folder fits.

    Returns:
        ``(len(input_paths), 3, size, size)`` float32 sRGB in [0, 1].
    Raises:
        DatasetError: the folder is missing, an input has no reference (or several with its stem),
            or a reference cannot be read; the message names the file.
    """
    by_stem, ambiguous = PairedFolder._by_stem(_folder_photos(reference_dir, "references"))
    amb = {p.stem for p, _ in ambiguous}
    rows = []
    for p in input_paths:
        stem = Path(p).stem
        if stem in amb:
            raise DatasetError(f"{reference_dir}: several references named {stem}.*")
        if stem not in by_stem:
            raise DatasetError(f"{reference_dir}: no reference for input {Path(p).name}")
        imgs, _, skipped = _load_many([by_stem[stem]], size, cache_dir, False, "references", square=True)
        if skipped:
            raise DatasetError(f"{skipped[0][0]}: unreadable reference ({skipped[0][1]})")
        rows.append(imgs[0])
    if not rows:
        return torch.zeros(0, 3, size, size)
    return torch.cat(rows, dim=0)


# ----------------------------------------------------------------------------------------------
# paired folders

_INPUT_DIRS = ("input", "inputs")
_REFERENCE_DIRS = ("reference", "references", "target", "targets", "expected", "gt")


@dataclass
class Pair:
    name: str
    input: Path
    reference: Path


def _find_subdir(root: Path, names: Sequence[str]) -> Path | None:
    for n in names:
        if (root / n).is_dir():
            return root / n
    return None


class PairedFolder:
    """Input/reference pairs matched by file stem (see the module docstring).

    Attributes:
        pairs: sorted by name.
        unmatched: files with no partner or with an ambiguous stem, as ``(path, reason)``.
    """

    def __init__(self, root: Path, *, input_dir: Path | None = None, reference_dir: Path | None = None) -> None:
        root = Path(root)
        self.root = root
        inp = Path(input_dir) if input_dir else _find_subdir(root, _INPUT_DIRS)
        ref = Path(reference_dir) if reference_dir else _find_subdir(root, _REFERENCE_DIRS)
        if inp is None or ref is None:
            raise DatasetError(
                f"{root}: not a paired folder (needs {'/'.join(_INPUT_DIRS)}/ and {'/'.join(_REFERENCE_DIRS)}/ subfolders)"
            )
        self.input_dir, self.reference_dir = inp, ref
        a, amb_a = self._by_stem(_folder_photos(inp, "input"))
        b, amb_b = self._by_stem(_folder_photos(ref, "reference"))
        self.unmatched: list[tuple[Path, str]] = amb_a + amb_b
        self.unmatched += [(a[s], "no reference with this name") for s in sorted(set(a) - set(b))]
        self.unmatched += [(b[s], "no input with this name") for s in sorted(set(b) - set(a))]
        self.pairs = [Pair(s, a[s], b[s]) for s in sorted(set(a) & set(b))]
        if not self.pairs:
            raise DatasetError(f"{root}: no input/reference pairs with matching names")

    @staticmethod
    def _by_stem(paths: list[Path]) -> tuple[dict[str, Path], list[tuple[Path, str]]]:
        groups: dict[str, list[Path]] = {}
        for p in paths:
            groups.setdefault(p.stem, []).append(p)
        ok = {s: ps[0] for s, ps in groups.items() if len(ps) == 1}
        amb = [(p, f"several files named {s}.*") for s, ps in groups.items() if len(ps) > 1 for p in ps]
        return ok, amb

    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, i: int, long_edge: int | None = PAPER_LONG_EDGE) -> tuple[torch.Tensor, torch.Tensor]:
        """Read pair ``i`` scaled down to ``long_edge`` (None: full size).

        The reference is resized to the input's exact size when they differ (exports often differ
        by a pixel). Returns ``(input_srgb, reference_srgb)``, each ``(1, 3, h, w)``.
        """
        from .io import read_image

        p = self.pairs[i]
        inp = read_image(p.input).img_srgb
        ref = read_image(p.reference).img_srgb
        if long_edge:
            inp = resize_long_edge(inp, long_edge, upscale=False)
        if ref.shape[-2:] != inp.shape[-2:]:
            ref = resize_exact(ref, (inp.shape[-2], inp.shape[-1]))
        return inp.clamp(0.0, 1.0), ref.clamp(0.0, 1.0)


# ----------------------------------------------------------------------------------------------
# MIT-Adobe FiveK

#: (train inputs, train targets, test) as in Hu et al. 2018 and Yu et al. 2018.
FIVEK_COUNTS = (2000, 2000, 1000)
#: Partition list files of the Exposure authors (one FiveK number or name per line).
FIVEK_PARTITION_FILES = ("FiveK_train1.txt", "FiveK_train2.txt", "FiveK_test.txt")

_FIVEK_NAME = re.compile(r"^a?(\d{1,4})(?:$|[-_ ])", re.IGNORECASE)
_INPUT_NAMES = ("rawphotos", "raw", "input", "inputs", "original", "originals", "inputasshotzeroed", "inputzeroed")


def fivek_id(name: str) -> int | None:
    """The FiveK photo number (1..5000) from a file name or stem, or None.

    ``"a0001-jmac_DSC1459.dng" -> 1``, ``"a4999.jpg" -> 4999``, ``"0042.png" -> 42``, ``"17" -> 17``.
    """
    stem = Path(name.strip()).name.split(".")[0]
    m = _FIVEK_NAME.match(stem)
    if not m:
        return None
    n = int(m.group(1))
    return n if 1 <= n <= 5000 else None


def _norm_dir(name: str) -> str:
    n = re.sub(r"[-_ ]", "", name.lower())
    return re.sub(r"(tif|tiff|jpg|jpeg|png|16bit|8bit)$", "", n) or n


@dataclass
class FiveKSplit:
    """FiveK numbers of the three disjoint parts."""

    train_inputs: list[int]
    train_targets: list[int]
    test: list[int]
    source: str = "seed"
    missing: list[int] = field(default_factory=list)


def _read_partition(path: Path) -> list[int]:
    ids = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        n = fivek_id(line)
        if n is None:
            raise DatasetError(f"{path}:{i}: not a FiveK photo number or name: {line!r}")
        ids.append(n)
    return ids


def fivek_split(
    available: Iterable[int],
    *,
    seed: int = 0,
    counts: tuple[int, int, int] = FIVEK_COUNTS,
    partition_dir: Path | None = None,
) -> FiveKSplit:
    """Split FiveK numbers into train inputs / train targets / test, pairwise disjoint.

    With ``partition_dir`` the three :data:`FIVEK_PARTITION_FILES` are read (numbers not in
    ``available`` are dropped and listed in ``missing``); otherwise the sorted ``available`` numbers
    are permuted by a ``torch.Generator`` seeded with ``seed`` and cut into ``counts``.

    Raises:
        DatasetError: too few photos for ``counts``, or overlapping partition files.
    """
    avail = sorted(set(int(i) for i in available))
    if partition_dir is not None:
        parts = []
        for fname in FIVEK_PARTITION_FILES:
            p = Path(partition_dir) / fname
            if not p.is_file():
                raise DatasetError(f"{p}: partition file not found")
            parts.append(_read_partition(p))
        a, b, c = (set(x) for x in parts)
        if a & b or a & c or b & c:
            raise DatasetError(f"{partition_dir}: partition files overlap")
        have = set(avail)
        missing = sorted((a | b | c) - have)
        kept = [[i for i in part if i in have] for part in parts]
        return FiveKSplit(kept[0], kept[1], kept[2], source=str(partition_dir), missing=missing)
    need = sum(counts)
    if len(avail) < need:
        raise DatasetError(f"FiveK: {len(avail)} photos available, the split needs {need} ({'+'.join(map(str, counts))})")
    g = torch.Generator().manual_seed(seed)
    perm = [avail[i] for i in torch.randperm(len(avail), generator=g).tolist()]
    n1, n2, n3 = counts
    return FiveKSplit(sorted(perm[:n1]), sorted(perm[n1 : n1 + n2]), sorted(perm[n1 + n2 : n1 + n2 + n3]), source=f"seed {seed}")


class FiveK:
    """An MIT-Adobe FiveK tree (layouts in the module docstring).

    Attributes:
        inputs: ``{number: path}`` of the input photos (RAW or exported).
        experts: ``{"A".."E": {number: path}}`` for the expert folders found.
    Args:
        root: the dataset folder.
        inputs_dir, expert_dirs: override discovery (``expert_dirs={"C": path}``).
    """

    def __init__(self, root: Path, *, inputs_dir: Path | None = None, expert_dirs: dict[str, Path] | None = None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"{root}: FiveK folder does not exist")
        subdirs = {_norm_dir(d.name): d for d in sorted(self.root.iterdir()) if d.is_dir()}
        if inputs_dir is None:
            inputs_dir = next((subdirs[n] for n in _INPUT_NAMES if n in subdirs), None)
        if inputs_dir is None:
            raise DatasetError(f"{root}: no FiveK input folder (looked for raw_photos/, raw/, input/, original/, ...)")
        self.inputs_dir = Path(inputs_dir)
        self.inputs = self._index(self.inputs_dir)
        self.experts: dict[str, dict[int, Path]] = {}
        self.expert_dirs: dict[str, Path] = {}
        for x in "ABCDE":
            d = (expert_dirs or {}).get(x)
            if d is None:
                d = subdirs.get(f"expert{x.lower()}") or subdirs.get(x.lower())
            if d is not None:
                self.expert_dirs[x] = Path(d)
                self.experts[x] = self._index(Path(d))
        if not self.inputs:
            raise DatasetError(f"{self.inputs_dir}: no FiveK photos (names like a0001-....dng or 0001.png)")

    @staticmethod
    def _index(folder: Path) -> dict[int, Path]:
        out: dict[int, Path] = {}
        for p in _list_images(folder):
            n = fivek_id(p.name)
            if n is not None and n not in out:
                out[n] = p
        return out

    def split(
        self,
        expert: str = "C",
        *,
        seed: int = 0,
        counts: tuple[int, int, int] = FIVEK_COUNTS,
        partition_dir: Path | None = None,
    ) -> tuple[list[Path], list[Path], list[Pair], FiveKSplit]:
        """The papers' protocol for ``expert``.

        Returns:
            ``(train_input_paths, train_target_paths, test_pairs, split)``: part 1 inputs, part 2
            expert photos, part 3 input/expert pairs for scoring.
        """
        x = expert.upper()
        if x not in self.experts:
            raise DatasetError(f"{self.root}: no folder for expert {x} (found: {', '.join(self.experts) or 'none'})")
        both = set(self.inputs) & set(self.experts[x])
        s = fivek_split(both, seed=seed, counts=counts, partition_dir=partition_dir)
        ex = self.experts[x]
        return (
            [self.inputs[i] for i in s.train_inputs],
            [ex[i] for i in s.train_targets],
            [Pair(self.inputs[i].stem, self.inputs[i], ex[i]) for i in s.test],
            s,
        )


def export_fivek(
    root: Path,
    out_dir: Path,
    *,
    expert: str = "C",
    seed: int = 0,
    counts: tuple[int, int, int] = FIVEK_COUNTS,
    partition_dir: Path | None = None,
    long_edge: int = PAPER_LONG_EDGE,
    overwrite: bool = False,
    progress: bool = False,
) -> dict:
    """Write the papers' FiveK protocol as ready-to-use folders, scaled to ``long_edge``::

        out_dir/train/inputs/    part 1 inputs        (--inputs for training)
        out_dir/train/targets/   part 2 expert photos (--targets for training)
        out_dir/test/input/      part 3 inputs        (eval --paired out_dir/test)
        out_dir/test/reference/  part 3 expert photos
        out_dir/split.json       the FiveK numbers of each part

    All as 16-bit PNG (RAW inputs keep their precision). Unreadable photos are skipped and listed.

    Returns:
        The content of ``split.json``.
    """
    import json

    from .io import ImageReadError, read_image, write_image

    out_dir = Path(out_dir)
    if (out_dir / "split.json").exists() and not overwrite:
        raise DatasetError(f"{out_dir}: already holds an exported split (use --overwrite)")
    ds = FiveK(root)
    tr_in, tr_tg, test, s = ds.split(expert, seed=seed, counts=counts, partition_dir=partition_dir)
    jobs = [(p, out_dir / "train" / "inputs") for p in tr_in] + [(p, out_dir / "train" / "targets") for p in tr_tg]
    jobs += [(pr.input, out_dir / "test" / "input") for pr in test] + [(pr.reference, out_dir / "test" / "reference") for pr in test]
    skipped = []
    it: Iterable = jobs
    if progress:
        from tqdm import tqdm

        it = tqdm(jobs, desc="fivek", unit="img")
    for src, dst_dir in it:
        dst_dir.mkdir(parents=True, exist_ok=True)
        n = fivek_id(src.name)
        try:
            img = resize_long_edge(read_image(src).img_srgb, long_edge, upscale=False).clamp(0.0, 1.0)
        except (ImageReadError, OSError) as e:
            skipped.append({"path": str(src), "reason": str(e)})
            continue
        write_image(dst_dir / f"a{n:04d}.png", img, bit_depth=16, overwrite=True)
    info = {
        "format": "deepexposure-fivek-split",
        "expert": expert.upper(),
        "source": s.source,
        "long_edge": long_edge,
        "train_inputs": s.train_inputs,
        "train_targets": s.train_targets,
        "test": s.test,
        "missing": s.missing,
        "skipped": skipped,
    }
    (out_dir / "split.json").write_text(json.dumps(info, indent=1) + "\n")
    return info
