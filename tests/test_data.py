"""Tests for deepexposure.data and deepexposure.resize: folders, pairs, FiveK protocol, cache."""

import os

import pytest
import torch

from deepexposure import data as D
from deepexposure.io import read_image, write_image
from deepexposure.resize import long_edge_shape, make_thumbnail, resize_exact, resize_long_edge


def _img(h, w, seed=0, value=None):
    if value is not None:
        return torch.full((1, 3, h, w), value)
    return torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(seed))


def _write(path, h=24, w=36, seed=0, value=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    write_image(path, _img(h, w, seed, value))
    return path


class TestResize:
    def test_long_edge(self):
        assert resize_long_edge(_img(30, 60), 20).shape == (1, 3, 10, 20)
        assert resize_long_edge(_img(60, 30), 20).shape == (1, 3, 20, 10)
        assert long_edge_shape(333, 500, 500) == (333, 500)
        small = _img(10, 12)
        assert resize_long_edge(small, 500, upscale=False) is small
        assert resize_long_edge(small, 24).shape == (1, 3, 20, 24)

    def test_antialiased_mean_preserved_and_constant_exact(self):
        x = _img(64, 96)
        y = resize_long_edge(x, 24)
        assert abs(y.mean() - x.mean()) < 0.01
        assert y.std() < x.std() / 2  # noise averaged away, not aliased
        c = _img(40, 50, value=0.3)
        torch.testing.assert_close(resize_exact(c, (7, 9)), torch.full((1, 3, 7, 9), 0.3))
        torch.testing.assert_close(resize_exact(c, 5, mode="area"), torch.full((1, 3, 5, 5), 0.3))

    def test_thumbnail_and_errors(self):
        assert make_thumbnail(_img(30, 80)).shape == (1, 3, 64, 64)
        assert resize_exact(_img(4, 4).double(), 2).dtype == torch.float64
        with pytest.raises(ValueError):
            resize_exact(torch.zeros(3, 4, 4), 2)
        with pytest.raises(ValueError):
            resize_exact(_img(4, 4), 2, mode="nearest")


class TestUnpaired:
    def test_loads_thumbnails_and_skips_broken(self, tmp_path):
        for i in range(3):
            _write(tmp_path / "in" / f"a{i}.png", seed=i)
        _write(tmp_path / "tg" / "t.jpg", 40, 20)
        (tmp_path / "in" / "broken.png").write_bytes(b"nope")
        u = D.UnpairedFolders(tmp_path / "in", tmp_path / "tg")
        assert u.inputs.shape == (3, 3, 64, 64) and u.targets.shape == (1, 3, 64, 64)
        assert u.inputs.dtype == torch.float32 and 0 <= u.inputs.min() and u.inputs.max() <= 1
        assert [p.name for p, _ in u.skipped] == ["broken.png"]
        assert [p.name for p in u.input_paths] == ["a0.png", "a1.png", "a2.png"]

    def test_refuses_too_few(self, tmp_path):
        _write(tmp_path / "in" / "a.png")
        (tmp_path / "tg").mkdir()
        (tmp_path / "tg" / "x.png").write_bytes(b"nope")
        with pytest.raises(D.DatasetError, match="0 readable photos \\(1 unreadable\\), need at least 1"):
            D.UnpairedFolders(tmp_path / "in", tmp_path / "tg")
        with pytest.raises(D.DatasetError, match="need at least 5"):
            D.UnpairedFolders(tmp_path / "in", tmp_path / "in", min_images=5)
        with pytest.raises(D.DatasetError, match="does not exist"):
            D.UnpairedFolders(tmp_path / "missing", tmp_path / "in")


class TestCache:
    def test_cache_hits_and_matches_direct(self, tmp_path):
        p = _write(tmp_path / "src" / "a.png", 120, 90)
        skipped = D.prepare_cache([p, tmp_path / "src" / "missing.png"], tmp_path / "cache", sizes=(64, 50))
        assert [s[0].name for s in skipped] == ["missing.png"]
        files = sorted(f.name for f in (tmp_path / "cache").iterdir())
        assert len(files) == 2 and any("sq64" in f for f in files) and any("le50" in f for f in files)
        thumb = D.load_image_at(p, 64, tmp_path / "cache", square=True)
        direct = make_thumbnail(read_image(p).img_srgb)
        assert thumb.shape == (1, 3, 64, 64)
        assert (thumb - direct).abs().max() < 1 / 65535 + 1e-6  # 16-bit PNG
        assert D.load_image_at(p, 50, tmp_path / "cache").shape == (1, 3, 50, 38)

    def test_key_changes_with_mtime(self, tmp_path):
        p = _write(tmp_path / "a.png")
        k1 = D.cache_path(p, 64, tmp_path / "c")
        os.utime(p, ns=(1, 10**18))
        assert D.cache_path(p, 64, tmp_path / "c") != k1

    def test_dataset_uses_cache(self, tmp_path):
        p = _write(tmp_path / "src" / "a.png")
        D.prepare_cache([p], tmp_path / "cache", sizes=(64,))
        ds = D.ThumbnailDataset([p], cache_dir=tmp_path / "cache")
        assert len(list((tmp_path / "cache").iterdir())) == 1 and ds[0].shape == (3, 64, 64)


class TestPaired:
    def test_match_by_stem_any_extension(self, tmp_path):
        _write(tmp_path / "input" / "x.png", 30, 40)
        _write(tmp_path / "reference" / "x.jpg", 31, 40)  # off by a pixel
        _write(tmp_path / "input" / "only_in.png")
        _write(tmp_path / "reference" / "dup.png")
        _write(tmp_path / "reference" / "dup.jpg")
        _write(tmp_path / "input" / "dup.png")
        pf = D.PairedFolder(tmp_path)
        assert [p.name for p in pf.pairs] == ["x"]
        reasons = {p.name: r for p, r in pf.unmatched}
        assert reasons["only_in.png"] == "no reference with this name"
        assert "several files" in reasons["dup.jpg"]
        inp, ref = pf.load(0, long_edge=20)
        assert inp.shape == ref.shape == (1, 3, 15, 20)

    def test_not_paired(self, tmp_path):
        with pytest.raises(D.DatasetError, match="not a paired folder"):
            D.PairedFolder(tmp_path)


class TestFiveK:
    def test_ids(self):
        assert D.fivek_id("a0001-jmac_DSC1459.dng") == 1
        assert D.fivek_id("a4999.jpg") == 4999
        assert D.fivek_id("0042.png") == 42
        assert D.fivek_id("17") == 17
        assert D.fivek_id("IMG_0001.jpg") is None
        assert D.fivek_id("9999") is None

    def test_seed_split_disjoint_and_reproducible(self):
        s1 = D.fivek_split(range(1, 21), seed=5, counts=(8, 8, 4))
        s2 = D.fivek_split(range(1, 21), seed=5, counts=(8, 8, 4))
        assert s1 == s2
        parts = [set(s1.train_inputs), set(s1.train_targets), set(s1.test)]
        assert [len(p) for p in parts] == [8, 8, 4] and len(set.union(*parts)) == 20
        assert D.fivek_split(range(1, 21), seed=6, counts=(8, 8, 4)) != s1
        with pytest.raises(D.DatasetError, match="needs 21"):
            D.fivek_split(range(1, 21), counts=(10, 10, 1))

    def test_partition_files(self, tmp_path):
        (tmp_path / "FiveK_train1.txt").write_text("1\n2\n3\n")
        (tmp_path / "FiveK_train2.txt").write_text("4\na0005-x\n")
        (tmp_path / "FiveK_test.txt").write_text("# test\n6\n7\n")
        s = D.fivek_split(range(1, 7), partition_dir=tmp_path)
        assert (s.train_inputs, s.train_targets, s.test, s.missing) == ([1, 2, 3], [4, 5], [6], [7])
        (tmp_path / "FiveK_test.txt").write_text("3\n")
        with pytest.raises(D.DatasetError, match="overlap"):
            D.fivek_split(range(1, 7), partition_dir=tmp_path)

    @pytest.mark.parametrize(
        "in_dir,ex_dir,fmt",
        [("raw_photos/HQa1to700/photos", "expertC", "a{:04d}-jmac_DSC{:04d}.{}"), ("input", "c", "{:04d}.{}"), ("InputAsShotZeroed", "Expert_C_tif", "a{:04d}.{}")],
    )
    def test_layouts_and_export(self, tmp_path, in_dir, ex_dir, fmt):
        root = tmp_path / "fivek"
        for n in range(1, 11):
            name = fmt.format(n, n + 100, "png") if fmt.count("{") == 3 else fmt.format(n, "png")
            _write(root / in_dir / name, 20, 30, seed=n)
            _write(root / ex_dir / name.replace(".png", ".jpg"), 20, 30, seed=100 + n)
        ds = D.FiveK(root)
        assert sorted(ds.inputs) == list(range(1, 11)) and list(ds.experts) == ["C"]
        tr_in, tr_tg, test, s = ds.split("C", seed=0, counts=(4, 4, 2))
        assert len(tr_in) == len(tr_tg) == 4 and len(test) == 2
        assert {D.fivek_id(p.name) for p in tr_in}.isdisjoint({D.fivek_id(p.name) for p in tr_tg})
        assert all(D.fivek_id(p.input.name) == D.fivek_id(p.reference.name) for p in test)
        with pytest.raises(D.DatasetError, match="expert B"):
            ds.split("B")
        info = D.export_fivek(root, tmp_path / "out", seed=0, counts=(4, 4, 2), long_edge=15)
        assert info["test"] == s.test
        pf = D.PairedFolder(tmp_path / "out" / "test")
        assert len(pf) == 2 and pf.load(0)[0].shape == (1, 3, 10, 15)
        u = D.UnpairedFolders(tmp_path / "out" / "train" / "inputs", tmp_path / "out" / "train" / "targets")
        assert u.inputs.shape[0] == 4 and u.targets.shape[0] == 4
        with pytest.raises(D.DatasetError, match="overwrite"):
            D.export_fivek(root, tmp_path / "out", counts=(4, 4, 2))

    def test_no_inputs(self, tmp_path):
        (tmp_path / "expertC").mkdir()
        with pytest.raises(D.DatasetError, match="no FiveK input folder"):
            D.FiveK(tmp_path)


def test_prepare_commands(tmp_path, capsys):
    import argparse

    from deepexposure.commands import prepare

    parser = argparse.ArgumentParser()
    prepare.register(parser.add_subparsers())
    root = tmp_path / "fivek"
    for n in range(1, 6):
        _write(root / "input" / f"a{n:04d}.png", 16, 20, seed=n)
        _write(root / "expertC" / f"a{n:04d}.jpg", 16, 20, seed=50 + n)
    args = parser.parse_args(["prepare", "fivek", str(root), "--out", str(tmp_path / "out"), "--counts", "2,2,1", "--long-edge", "10", "--quiet"])
    assert args.func(args) == 0
    assert len(list((tmp_path / "out" / "train" / "inputs").iterdir())) == 2
    args = parser.parse_args(["prepare", "cache", str(root / "input"), "--cache", str(tmp_path / "c"), "--sizes", "64", "--quiet"])
    assert args.func(args) == 0 and len(list((tmp_path / "c").iterdir())) == 5
    assert "cached 5 of 5" in capsys.readouterr().out
