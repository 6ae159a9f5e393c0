"""API tests of ``deepexposure serve``: every endpoint, hostile uploads, two users at once."""

from __future__ import annotations

import io
import struct
import tempfile
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("starlette")
pytest.importorskip("python_multipart")
pytest.importorskip("httpx")

from starlette.testclient import TestClient  # noqa: E402

from deepexposure.serve import ServeConfig, create_app  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[1] / "src" / "deepexposure" / "samples"


# ----------------------------------------------------------------------------------------------
# small files


def jpeg_bytes(w: int = 96, h: int = 64, seed: int = 0, quality: int = 90) -> bytes:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    arr = np.stack([x * 255 // w, y * 255 // h, (x + y) * 127 // (w + h)], -1).astype(np.uint8)
    arr = np.clip(arr.astype(int) // 3 + rng.integers(0, 8, arr.shape), 0, 255).astype(np.uint8)  # dark
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def png_bytes(w: int = 80, h: int = 60, mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (w, h), (40, 60, 80) + ((200,) if mode == "RGBA" else ())).save(buf, "PNG")
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG declaring ``width x height`` with one tiny IDAT (a decompression-bomb header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


#: (browser file name, content, words the one-line error must contain)
HOSTILE = [
    ("empty.jpg", b"", ["empty.jpg", "empty"]),
    ("truncated.jpg", jpeg_bytes()[:300], ["truncated.jpg"]),
    ("truncated.png", png_bytes()[:60], ["truncated.png"]),
    ("garbage.webp", bytes(range(256)) * 8, ["garbage.webp", "not JPEG, PNG, WebP or TIFF"]),
    ("notes.jpg", b"hello, this is text\n" * 20, ["notes.jpg", "text file"]),
    ("bomb.png", png_header_only(100_000, 100_000), ["bomb.png", "exceeds the limit"]),
    ("huge-header.tif", b"II*\x00" + b"\xff" * 60, ["huge-header.tif"]),
    ("tiny.png", png_bytes(4, 4), ["tiny.png", "at least"]),
    ("photo.cr2", jpeg_bytes(), ["photo.cr2"]),  # a JPEG named as a RAW: the RAW decoder refuses it
]


def one_line(msg: str) -> None:
    assert isinstance(msg, str) and msg and "\n" not in msg and "Traceback" not in msg, msg


# ----------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("serve-work")


@pytest.fixture(scope="module")
def client(work):
    app = create_app(ServeConfig(work_dir=work, max_pixels=50_000_000, preview_size=256, max_sessions=500))
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def new_session(client) -> str:
    r = client.post("/api/session")
    assert r.status_code == 200
    return r.json()["session"]


def upload(client, sid, *files):
    return client.post(f"/api/s/{sid}/photos", files=[("files", (n, data, "application/octet-stream")) for n, data in files])


def wait_job(client, sid, jid, timeout=120.0) -> dict:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        j = client.get(f"/api/s/{sid}/jobs/{jid}").json()
        if j["state"] in ("done", "cancelled"):
            return j
        time.sleep(0.05)
    raise AssertionError(f"job {jid} did not finish: {j}")


@pytest.fixture(scope="module")
def sid(client) -> str:
    return new_session(client)


@pytest.fixture(scope="module")
def photo(client, sid) -> dict:
    r = upload(client, sid, ("coffee.jpg", (SAMPLES / "coffee_underexposed.jpg").read_bytes()))
    assert r.status_code == 200, r.text
    return r.json()["photos"][0]


# ----------------------------------------------------------------------------------------------
# page and info


class TestPage:
    def test_index_and_static_files(self, client):
        r = client.get("/")
        assert r.status_code == 200 and "<script src=\"/static/app.js\"" in r.text
        csp = r.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp
        assert r.headers["x-content-type-options"] == "nosniff"
        for f in ("app.js", "style.css", "index.html"):
            assert client.get(f"/static/{f}").status_code == 200

    def test_page_loads_nothing_from_elsewhere(self, client):
        for f in ("/", "/static/app.js", "/static/style.css"):
            text = client.get(f).text
            assert "http://" not in text and "https://" not in text and "//cdn" not in text, f
            assert "@import" not in text and "url(" not in text, f

    def test_static_traversal_refused(self, client):
        for path in ("/static/../app.py", "/static/%2e%2e/app.py", "/static/..%2fapp.py"):
            r = client.get(path)
            assert r.status_code == 404 or "create_app" not in r.text

    def test_info(self, client):
        d = client.get("/api/info").json()
        assert d["methods"][:4] == ["deepexposure", "exposure", "fusion", "identity"]
        assert not any(m.startswith("oracle") for m in d["methods"])  # they need a reference
        assert d["filters"]["exposure"]["low"] == [-3.5] and d["filters"]["tone_curve"]["n_params"] == 8
        assert d["export_formats"] == ["jpg", "png", "tif", "webp"]
        assert ".cr2" in d["extensions"] and d["preview_size"] == 256

    def test_unknown_session(self, client):
        for sid in ("nope", "A" * 24, "a.b.c.d.e.f.g"):
            r = client.get(f"/api/s/{sid}/photos")
            assert r.status_code == 404 and "reload the page" in r.json()["error"]
        assert client.get("/api/s/../../etc/photos").status_code == 404

    def test_unknown_route_is_one_line_json(self, client):
        r = client.get("/api/nothing-here")
        assert r.status_code == 404
        one_line(r.json()["error"])


# ----------------------------------------------------------------------------------------------
# uploads


class TestUpload:
    def test_upload_lists_and_previews(self, client, sid, photo):
        assert photo["width"] == 600 and photo["height"] == 400 and photo["format"] == "JPEG"
        assert not photo["retouched"]
        ids = [p["id"] for p in client.get(f"/api/s/{sid}/photos").json()["photos"]]
        assert photo["id"] in ids
        r = client.get(f"/api/s/{sid}/photos/{photo['id']}/original.jpg")
        assert r.headers["content-type"] == "image/jpeg"
        assert Image.open(io.BytesIO(r.content)).size == (256, 171)  # the preview, long edge 256
        t = client.get(f"/api/s/{sid}/photos/{photo['id']}/original.jpg?thumb=1")
        assert max(Image.open(io.BytesIO(t.content)).size) == 160

    def test_many_formats_in_one_upload(self, client):
        s = new_session(client)
        buf = io.BytesIO()
        Image.new("RGB", (70, 50), (10, 20, 30)).save(buf, "WEBP")
        tif = io.BytesIO()
        Image.new("RGB", (70, 50), (10, 20, 30)).save(tif, "TIFF")
        r = upload(client, s, ("a.jpg", jpeg_bytes()), ("b.png", png_bytes(mode="RGBA")), ("c.webp", buf.getvalue()),
                   ("d.tif", tif.getvalue()), ("e.jpg", png_bytes()))  # a PNG named .jpg: read by its content
        assert r.status_code == 200, r.text
        assert [p["format"] for p in r.json()["photos"]] == ["JPEG", "PNG", "WEBP", "TIFF", "PNG"]
        assert r.json()["errors"] == []

    def test_raw_upload_and_export_as_16_bit_tiff(self, client, tmp_path):
        pytest.importorskip("rawpy")
        try:
            from tests.test_io import make_dng
        except ImportError:
            pytest.skip("the DNG helper of tests/test_io.py is not available")
        cfa = np.full((64, 96), 600, np.uint16)
        cfa[0::2, 1::2] = 900  # G
        cfa[1::2, 0::2] = 900
        dng = make_dng(tmp_path / "a.dng", cfa)
        s = new_session(client)
        r = upload(client, s, ("IMG_0001.DNG", dng.read_bytes()))
        assert r.status_code == 200, r.text
        p = r.json()["photos"][0]
        assert p["format"] == "DNG" and (p["width"], p["height"]) == (96, 64)
        j = wait_job(client, s, client.post(f"/api/s/{s}/jobs", json={"kind": "export", "photos": [p["id"]], "method": "auto"}).json()["id"])
        item = j["items"][0]
        assert item["status"] == "done" and item["file"] == "IMG_0001.tif", item  # RAW -> 16-bit TIFF, as `retouch`
        import tifffile

        out = tmp_path / "o.tif"
        out.write_bytes(client.get(item["url"]).content)
        assert tifffile.imread(out).dtype == np.uint16

    @pytest.mark.parametrize("name,data,words", HOSTILE, ids=[h[0] for h in HOSTILE])
    def test_hostile_file_answered_in_one_line(self, client, work, name, data, words):
        s = new_session(client)
        r = upload(client, s, (name, data))
        assert r.status_code == 415, r.text
        body = r.json()
        assert body["photos"] == [] and len(body["errors"]) == 1
        msg = body["error"]
        one_line(msg)
        for w in words:
            assert w in msg, msg
        assert str(work) not in msg  # the server's folders are not shown
        assert client.get(f"/api/s/{s}/photos").json()["photos"] == []
        assert list((work / "sessions" / s / "uploads").iterdir()) == []  # nothing left behind

    @pytest.mark.parametrize("name", ["../../../etc/passwd.jpg", "..\\..\\win.ini.jpg", "/abs/path/x.jpg",
                                      "a\x00b\x1b[31m.jpg", "..", " ", "x" * 500 + ".jpg", "éà ü.jpg"])
    def test_path_traversal_and_odd_names(self, client, work, name):
        s = new_session(client)
        r = upload(client, s, (name, jpeg_bytes()))
        assert r.status_code == 200, r.text
        p = r.json()["photos"][0]
        assert "/" not in p["name"] and "\\" not in p["name"] and "\x00" not in p["name"] and "\x1b" not in p["name"]
        assert len(p["name"]) <= 120
        stored = [f for f in (work / "sessions" / s / "uploads").iterdir()]
        assert all(f.name.startswith(p["id"]) for f in stored)
        assert not (work / "etc").exists() and not Path("/etc/passwd.jpg").exists()
        # export under a safe name in the session's export folder
        client.post(f"/api/s/{s}/photos/{p['id']}/retouch", json={"method": "identity"})
        j = wait_job(client, s, client.post(f"/api/s/{s}/jobs", json={"kind": "export", "photos": [p["id"]]}).json()["id"])
        item = j["items"][0]
        assert item["status"] == "done", item
        assert (work / "sessions" / s / "exports" / item["file"]).is_file()

    def test_too_large_upload(self, tmp_path):
        app = create_app(ServeConfig(work_dir=tmp_path, max_upload_bytes=20_000))
        with TestClient(app) as c:
            s = new_session(c)
            r = upload(c, s, ("big.jpg", jpeg_bytes(400, 300, quality=100)))
            assert r.status_code == 413
            one_line(r.json()["error"])
            assert "too large" in r.json()["error"]
            assert list((tmp_path / "sessions" / s / "uploads").iterdir()) == []

    def test_pixel_limit(self, tmp_path):
        app = create_app(ServeConfig(work_dir=tmp_path, max_pixels=5000))
        with TestClient(app) as c:
            s = new_session(c)
            r = upload(c, s, ("wide.jpg", jpeg_bytes(120, 80)))
            assert r.status_code == 415 and "exceeds the limit of 5000 pixels" in r.json()["error"]

    def test_malformed_multipart(self, client, sid):
        url = f"/api/s/{sid}/photos"
        r = client.post(url, content=b"x", headers={"content-type": "multipart/form-data"})
        assert r.status_code == 400 and "boundary" in r.json()["error"]
        body = b"--XYZ\r\nContent-Disposition: form-data; name=\"files\"; filename=\"a.jpg\"\r\n\r\n" + jpeg_bytes()[:500]
        r = client.post(url, content=body, headers={"content-type": "multipart/form-data; boundary=XYZ"})
        assert r.status_code == 400 and "cut off" in r.json()["error"]
        r = client.post(url, content=b"--XYZ--\r\n", headers={"content-type": "multipart/form-data; boundary=XYZ"})
        assert r.status_code == 400 and "no file" in r.json()["error"]
        r = client.post(url, content=jpeg_bytes(), headers={"content-type": "image/jpeg"})
        assert r.status_code == 415 and "multipart" in r.json()["error"]

    def test_uploads_never_use_the_system_temp_folder(self, tmp_path, monkeypatch):
        monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no-such-folder"))
        app = create_app(ServeConfig(work_dir=tmp_path / "work"))
        with TestClient(app) as c:
            s = new_session(c)
            r = upload(c, s, ("a.jpg", jpeg_bytes(400, 300)))
            assert r.status_code == 200, r.text

    def test_delete_photo(self, client):
        s = new_session(client)
        p = upload(client, s, ("a.jpg", jpeg_bytes())).json()["photos"][0]
        assert client.delete(f"/api/s/{s}/photos/{p['id']}").json() == {"ok": True}
        assert client.get(f"/api/s/{s}/photos/{p['id']}").status_code == 404
        assert client.delete(f"/api/s/{s}/photos/{p['id']}").status_code == 404


# ----------------------------------------------------------------------------------------------
# retouch, render, explain


class TestRetouch:
    def test_before_retouch(self, client):
        s = new_session(client)
        p = upload(client, s, ("a.jpg", jpeg_bytes())).json()["photos"][0]
        for what in ("result.jpg", "explain.jpg"):
            r = client.get(f"/api/s/{s}/photos/{p['id']}/{what}")
            assert r.status_code == 409 and "retouch" in r.json()["error"]

    def test_deepexposure_recipe_has_regions(self, client, sid, photo):
        r = client.post(f"/api/s/{sid}/photos/{photo['id']}/retouch", json={"method": "deepexposure"})
        assert r.status_code == 200, r.text
        rec = r.json()["recipe"]
        assert rec["image"] == {"width": 600, "height": 400, "source": "coffee.jpg"}
        assert len(rec["segment_map"]) == 64 and len(rec["segments"]) == len(rec["ops"][0]["evs"])
        assert any("preview" in n for n in rec["notes"])
        res = client.get(f"/api/s/{sid}/photos/{photo['id']}/result.jpg")
        assert res.headers["content-type"] == "image/jpeg"

    @pytest.mark.parametrize("spec,op", [({"method": "exposure"}, "filter"), ({"method": "fusion", "ev": "-1,0,1"}, "exposure_fusion"),
                                         ({"method": "identity"}, "exposure_fusion"), ({"method": "exposures", "ev": [1, 0.5]}, "exposure_fusion"),
                                         ({"method": "auto"}, "filter"), ({"method": "deepexposure", "segments": 3}, "exposure_fusion")])
    def test_methods(self, client, sid, photo, spec, op):
        r = client.post(f"/api/s/{sid}/photos/{photo['id']}/retouch", json=spec)
        assert r.status_code == 200, r.text
        rec = r.json()["recipe"]
        assert rec["ops"][0]["op"] == op and rec["method"]["name"] == spec["method"]
        if spec["method"] == "fusion":
            assert rec["ops"][0]["evs"] == [-1.0, 0.0, 1.0]
        if spec.get("segments"):
            assert len(rec["segments"]) == 3

    @pytest.mark.parametrize("spec,word", [({"method": "nope"}, "unknown method"), ({"method": "fusion", "ev": "a,b"}, "ev"),
                                           ({"method": "exposures"}, "one exposure per region"),
                                           ({"method": "deepexposure", "model": "/no/such/model"}, "/no/such/model"),
                                           ({"method": "deepexposure", "segments": 99}, "segments"),
                                           ({"method": "oracle-global"}, "reference")])
    def test_bad_method_options(self, client, sid, photo, spec, word):
        r = client.post(f"/api/s/{sid}/photos/{photo['id']}/retouch", json=spec)
        assert 400 <= r.status_code < 500, r.text
        one_line(r.json()["error"])
        assert word in r.json()["error"]

    def test_render_changes_preview_and_keeps_recipe(self, client, sid, photo):
        url = f"/api/s/{sid}/photos/{photo['id']}"
        rec = client.post(url + "/retouch", json={"method": "deepexposure"}).json()["recipe"]
        a = client.post(url + "/render", json={"recipe": rec})
        assert a.status_code == 200 and a.headers["content-type"] == "image/jpeg" and float(a.headers["x-render-ms"]) > 0
        rec["ops"][0]["evs"][0] = 3.0
        b = client.post(url + "/render", json={"recipe": rec})
        ia = np.asarray(Image.open(io.BytesIO(a.content)), dtype=float)
        ib = np.asarray(Image.open(io.BytesIO(b.content)), dtype=float)
        assert ia.shape == ib.shape == (171, 256, 3)
        assert ib.mean() > ia.mean() + 1  # region 0 (the darkest) brighter
        got = client.get(url).json()["recipe"]
        assert got["ops"][0]["evs"][0] == 3.0 and got["image"]["width"] == 600
        # a draft (slider being dragged): half-size preview; the recipe is kept, the shown result is not replaced
        rec["ops"][0]["evs"][0] = 2.0
        d = client.post(url + "/render", json={"recipe": rec, "draft": True})
        assert Image.open(io.BytesIO(d.content)).size == (128, 86)
        assert client.get(url).json()["recipe"]["ops"][0]["evs"][0] == 2.0
        assert client.get(url + "/result.jpg").content == b.content

    @pytest.mark.parametrize("recipe,status,word", [
        ({"format": "deepexposure-recipe", "version": 1, "ops": [{"op": "exposure_fusion", "evs": [99]}]}, 422, "[-10, 10]"),
        ({"format": "deepexposure-recipe", "version": 1, "ops": [{"op": "filter", "name": "exposure", "params": [1, 2]}]}, 422, "1 numeric"),
        ({"format": "deepexposure-recipe", "version": 1, "ops": [{"op": "rm -rf"}]}, 422, "unknown op"),
        ({"format": "other"}, 422, "not a deepexposure recipe"), ([1, 2], 422, "not a JSON object"), (None, 422, "not a JSON object"),
    ])
    def test_render_refuses_bad_recipes(self, client, sid, photo, recipe, status, word):
        r = client.post(f"/api/s/{sid}/photos/{photo['id']}/render", json={"recipe": recipe})
        assert r.status_code == status, r.text
        one_line(r.json()["error"])
        assert word in r.json()["error"]

    def test_bad_json_body(self, client, sid, photo):
        url = f"/api/s/{sid}/photos/{photo['id']}/render"
        r = client.post(url, content=b"{not json", headers={"content-type": "application/json"})
        assert r.status_code == 400 and "not valid JSON" in r.json()["error"]
        r = client.post(url, content=b"[]", headers={"content-type": "application/json"})
        assert r.status_code == 400
        r = client.post(url, content=b" " * (5 * 2**20), headers={"content-type": "application/json"})
        assert r.status_code == 413

    def test_explain(self, client, sid, photo):
        url = f"/api/s/{sid}/photos/{photo['id']}"
        client.post(url + "/retouch", json={"method": "deepexposure"})
        r = client.get(url + "/explain.jpg")
        assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
        w, h = Image.open(io.BytesIO(r.content)).size
        assert w > 3 * h  # original, segments, one panel per step, result

    def test_recipe_check(self, client, sid, photo):
        rec = client.post(f"/api/s/{sid}/photos/{photo['id']}/retouch", json={"method": "exposure"}).json()["recipe"]
        r = client.post(f"/api/s/{sid}/recipe/check", json={"recipe": rec, "source": "x.recipe.json"})
        assert r.status_code == 200 and r.json()["recipe"]["ops"] == rec["ops"]
        r = client.post(f"/api/s/{sid}/recipe/check", json={"recipe": {"format": "deepexposure-recipe", "version": 7}, "source": "x.json"})
        assert r.status_code == 422 and r.json()["error"].startswith("x.json: unsupported recipe version")


# ----------------------------------------------------------------------------------------------
# jobs and exports


class TestJobs:
    def test_batch_retouch_apply_export(self, client, work):
        s = new_session(client)
        ps = upload(client, s, *[(f"p{i}.jpg", jpeg_bytes(seed=i)) for i in range(3)]).json()["photos"]
        ids = [p["id"] for p in ps]
        j = wait_job(client, s, client.post(f"/api/s/{s}/jobs", json={"kind": "retouch", "photos": ids, "method": "fusion"}).json()["id"])
        assert j["done"] == j["total"] == 3 and all(it["status"] == "done" for it in j["items"])
        assert all(client.get(f"/api/s/{s}/photos/{i}").json()["method"] == "fusion" for i in ids)
        # load a recipe and apply it to the others
        rec = {"format": "deepexposure-recipe", "version": 1, "image": {"source": "elsewhere.jpg"},
               "ops": [{"op": "filter", "name": "exposure", "params": [1.0]}]}
        j = wait_job(client, s, client.post(f"/api/s/{s}/jobs", json={"kind": "apply", "photos": ids, "recipe": rec}).json()["id"])
        assert all(it["status"] == "done" for it in j["items"])
        got = client.get(f"/api/s/{s}/photos/{ids[1]}").json()
        assert got["recipe"]["ops"] == rec["ops"] and got["recipe_from"] == "elsewhere.jpg"
        assert got["recipe"]["image"]["source"] == "p1.jpg"
        # export all, full resolution, as WebP quality 80
        j = wait_job(client, s, client.post(f"/api/s/{s}/jobs", json={"kind": "export", "photos": ids, "format": "webp", "quality": 80}).json()["id"])
        assert [it["status"] for it in j["items"]] == ["done"] * 3
        for it in j["items"]:
            r = client.get(it["url"])
            assert r.status_code == 200 and "attachment" in r.headers["content-disposition"]
            assert Image.open(io.BytesIO(r.content)).size == (96, 64) and r.content[8:12] == b"WEBP"
            rr = client.get(it["recipe_url"]).json()
            assert rr["ops"] == rec["ops"] and rr["image"]["width"] == 96
        names = [it["file"] for it in j["items"]]
        assert names == ["p0.webp", "p1.webp", "p2.webp"]
        # a second export of the same photo gets a new name, never overwrites
        j2 = wait_job(client, s, client.post(f"/api/s/{s}/jobs", json={"kind": "export", "photos": ids[:1], "format": "webp"}).json()["id"])
        assert j2["items"][0]["file"] != "p0.webp"

    def test_export_full_resolution_matches_apply(self, client, sid, photo, tmp_path):
        from deepexposure.io import read_image
        from deepexposure.recipe import Recipe, render

        url = f"/api/s/{sid}/photos/{photo['id']}"
        rec = client.post(url + "/retouch", json={"method": "deepexposure"}).json()["recipe"]
        rec["ops"][0]["evs"][1] = -1.0
        assert client.post(url + "/render", json={"recipe": rec}).status_code == 200
        j = wait_job(client, sid, client.post(f"/api/s/{sid}/jobs", json={"kind": "export", "photos": [photo["id"]], "format": "png"}).json()["id"])
        it = j["items"][0]
        assert it["status"] == "done", it
        out = tmp_path / "out.png"
        out.write_bytes(client.get(it["url"]).content)
        got = read_image(out).img_srgb
        assert got.shape[-2:] == (400, 600)
        saved = client.get(it["recipe_url"]).json()
        assert saved["ops"][0]["evs"][1] == -1.0
        want = render(Recipe.from_dict(saved), read_image(SAMPLES / "coffee_underexposed.jpg").img_srgb)
        assert (got - want).abs().max() <= 1 / 255 + 1e-6  # exactly `deepexposure apply`, to 8-bit rounding

    def test_job_errors(self, client):
        s = new_session(client)
        p = upload(client, s, ("a.jpg", jpeg_bytes())).json()["photos"][0]
        for body, word in [({"kind": "dance", "photos": [p["id"]]}, "kind"), ({"kind": "export", "photos": []}, "photos"),
                           ({"kind": "export", "photos": ["deadbeefdeadbeef"]}, "no such photo"),
                           ({"kind": "export", "photos": [p["id"]], "format": "bmp"}, "format"),
                           ({"kind": "export", "photos": [p["id"]], "quality": 0}, "quality"),
                           ({"kind": "apply", "photos": [p["id"]], "recipe": {"format": "x"}}, "recipe")]:
            r = client.post(f"/api/s/{s}/jobs", json=body)
            assert 400 <= r.status_code < 500 and word in r.json()["error"], (body, r.text)
        # exporting a photo that was never retouched, without a method: a per-photo error
        j = wait_job(client, s, client.post(f"/api/s/{s}/jobs", json={"kind": "export", "photos": [p["id"]]}).json()["id"])
        assert j["items"][0]["status"] == "error" and "not retouched yet" in j["items"][0]["error"]
        # ... with a method: retouched on the way
        j = wait_job(client, s, client.post(f"/api/s/{s}/jobs", json={"kind": "export", "photos": [p["id"]], "method": "auto"}).json()["id"])
        assert j["items"][0]["status"] == "done"
        assert client.get(f"/api/s/{s}/jobs/nope").status_code == 404

    def test_cancel(self, client):
        s = new_session(client)
        ids = [p["id"] for p in upload(client, s, *[(f"p{i}.jpg", jpeg_bytes(seed=i)) for i in range(6)]).json()["photos"]]
        jid = client.post(f"/api/s/{s}/jobs", json={"kind": "retouch", "photos": ids, "method": "deepexposure"}).json()["id"]
        assert client.post(f"/api/s/{s}/jobs/{jid}/cancel").status_code == 200
        j = wait_job(client, s, jid)
        assert j["state"] == "cancelled" and any(it["status"] == "cancelled" for it in j["items"])

    def test_downloads_only_from_the_session(self, client, sid, photo):
        s2 = new_session(client)
        j = wait_job(client, sid, client.post(f"/api/s/{sid}/jobs", json={"kind": "export", "photos": [photo["id"]], "method": "identity"}).json()["id"])
        name = j["items"][0]["file"]
        assert client.get(f"/api/s/{s2}/exports/{name}").status_code == 404  # another user's export
        for bad in ("..%2F..%2Fuploads%2Fx.jpg", "%2Fetc%2Fpasswd", ".hidden", "a%00b"):
            assert client.get(f"/api/s/{sid}/exports/{bad}").status_code == 404


# ----------------------------------------------------------------------------------------------
# two users at once, limits


def test_two_users_at_once(client):
    """Two sessions upload, retouch, move sliders and export concurrently; neither sees the other."""
    errors: list[str] = []
    results: dict[str, dict] = {}

    def user(tag: str, seed: int) -> None:
        try:
            s = new_session(client)
            ps = upload(client, s, *[(f"{tag}{i}.jpg", jpeg_bytes(seed=seed + i)) for i in range(2)]).json()["photos"]
            for p in ps:
                url = f"/api/s/{s}/photos/{p['id']}"
                rec = client.post(url + "/retouch", json={"method": "deepexposure"}).json()["recipe"]
                for ev in (0.5, 1.5, 2.5):
                    rec["ops"][0]["evs"][0] = ev
                    r = client.post(url + "/render", json={"recipe": rec})
                    assert r.status_code == 200, r.text
            jid = client.post(f"/api/s/{s}/jobs", json={"kind": "export", "photos": [p["id"] for p in ps], "format": "jpg"}).json()["id"]
            j = wait_job(client, s, jid)
            results[tag] = {"sid": s, "ids": [p["id"] for p in ps], "job": j,
                            "listed": [p["name"] for p in client.get(f"/api/s/{s}/photos").json()["photos"]]}
        except Exception as e:  # noqa: BLE001
            errors.append(f"{tag}: {e!r}")

    threads = [threading.Thread(target=user, args=(t, k * 10)) for k, t in enumerate(("alice", "bob"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors
    a, b = results["alice"], results["bob"]
    assert a["listed"] == ["alice0.jpg", "alice1.jpg"] and b["listed"] == ["bob0.jpg", "bob1.jpg"]
    assert all(it["status"] == "done" for it in a["job"]["items"] + b["job"]["items"])
    for it in a["job"]["items"]:
        assert client.get(it["url"]).status_code == 200
    # bob cannot reach alice's photos through his session
    assert client.get(f"/api/s/{b['sid']}/photos/{a['ids'][0]}").status_code == 404
    saved = [client.get(it["recipe_url"]).json() for it in a["job"]["items"]]
    assert all(r["ops"][0]["evs"][0] == 2.5 for r in saved)  # the last slider value, not the other user's


def test_session_limit_drops_the_oldest_idle(tmp_path):
    app = create_app(ServeConfig(work_dir=tmp_path, max_sessions=2))
    with TestClient(app) as c:
        s1, s2, s3 = new_session(c), new_session(c), new_session(c)
        assert c.get(f"/api/s/{s1}/photos").status_code == 404
        assert c.get(f"/api/s/{s3}/photos").status_code == 200
        assert not (tmp_path / "sessions" / s1).exists()
        assert sorted(p.name for p in (tmp_path / "sessions").iterdir()) == sorted([s2, s3])


def test_photo_limit(tmp_path):
    app = create_app(ServeConfig(work_dir=tmp_path, max_photos=1))
    with TestClient(app) as c:
        s = new_session(c)
        r = upload(c, s, ("a.jpg", jpeg_bytes()), ("b.jpg", jpeg_bytes()))
        assert r.status_code == 200 and len(r.json()["photos"]) == 1
        assert "already holds 1 photos" in r.json()["errors"][0]["error"]


def test_host_header_guard(tmp_path):
    app = create_app(ServeConfig(work_dir=tmp_path, allowed_hosts=["127.0.0.1", "localhost"]))
    with TestClient(app, base_url="http://evil.example") as c:
        assert c.get("/api/info").status_code == 400
    with TestClient(app, base_url="http://127.0.0.1:8765") as c:
        assert c.get("/api/info").status_code == 200


def test_nothing_written_outside_the_work_folder(client, work):
    before = set(Path(tempfile.gettempdir()).iterdir())
    s = new_session(client)
    p = upload(client, s, ("a.jpg", jpeg_bytes())).json()["photos"][0]
    wait_job(client, s, client.post(f"/api/s/{s}/jobs", json={"kind": "export", "photos": [p["id"]], "method": "fusion"}).json()["id"])
    new = {f for f in set(Path(tempfile.gettempdir()).iterdir()) - before if not str(work).startswith(str(f))}
    assert not new, new
    assert all(str(f.resolve()).startswith(str(work.resolve())) for f in (work / "sessions" / s).rglob("*"))


def test_serve_command_options():
    from deepexposure.cli import build_parser

    args = build_parser().parse_args(["serve", "--port", "9999", "--work-dir", "w", "--max-upload-mb", "5"])
    assert (args.host, args.port, str(args.work_dir), args.max_upload_mb) == ("127.0.0.1", 9999, "w", 5)
