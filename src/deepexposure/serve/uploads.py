"""Streaming multipart uploads into the work folder, with a byte limit.

Starlette's own form parser spools large files into the system temp folder; the server must write
nothing outside its work folder, so uploads are parsed here with python-multipart's streaming
:class:`~python_multipart.multipart.MultipartParser`, each file part written straight to a hidden
``.upload-<random>.part`` file in the session's upload folder. The browser's file name is returned
as text only; it never becomes part of a path.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import BinaryIO

__all__ = ["UploadError", "stream_multipart"]


class UploadError(Exception):
    """A refused or malformed upload; ``str()`` is one line, ``status`` the HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _mb(n: int) -> str:
    return f"{n / 2**20:.0f} MB" if n >= 2**20 else f"{n} bytes"


async def stream_multipart(request, dest_dir: Path, max_bytes: int, max_files: int = 200) -> list[tuple[Path, str]]:
    """Parse a ``multipart/form-data`` request; every part with a file name is written to ``dest_dir``.

    Args:
        request: the Starlette request.
        dest_dir: folder for the part files (the session's upload folder).
        max_bytes: limit on the whole request body.
        max_files: limit on the number of file parts.
    Returns:
        ``[(part_file, browser_file_name), ...]`` in upload order; the caller owns (and deletes) the files.
    Raises:
        UploadError: too large, too many files, malformed or truncated; no part file is left behind.
    """
    from python_multipart.exceptions import FormParserError
    from python_multipart.multipart import MultipartParser, parse_options_header

    _, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if not boundary:
        raise UploadError(400, "malformed upload: multipart/form-data without a boundary")
    cl = request.headers.get("content-length")
    if cl is not None and cl.isdigit() and int(cl) > max_bytes:
        raise UploadError(413, f"upload too large: {_mb(int(cl))} (limit {_mb(max_bytes)} per upload)")

    parts: list[tuple[Path, str]] = []
    st: dict = {"field": b"", "value": b"", "headers": {}, "fh": None, "path": None, "name": None, "ended": False,
                "error": None}

    def on_part_begin() -> None:
        st.update(headers={}, field=b"", value=b"", fh=None, path=None, name=None)

    def on_header_field(data: bytes, start: int, end: int) -> None:
        st["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        st["value"] += data[start:end]

    def on_header_end() -> None:
        st["headers"][st["field"].lower()] = st["value"]
        st.update(field=b"", value=b"")

    def on_headers_finished() -> None:
        _, cd = parse_options_header(st["headers"].get(b"content-disposition", b""))
        if b"filename" not in cd:
            return  # a plain form field: ignored
        if len(parts) >= max_files:
            st["error"] = UploadError(413, f"too many files in one upload (limit {max_files})")
            return
        path = dest_dir / f".upload-{secrets.token_hex(8)}.part"
        fh: BinaryIO = open(path, "wb")  # noqa: SIM115 - closed in on_part_end / cleanup
        st.update(fh=fh, path=path, name=cd[b"filename"].decode("utf-8", "replace"))

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if st["fh"] is not None:
            st["fh"].write(data[start:end])

    def on_part_end() -> None:
        if st["fh"] is not None:
            st["fh"].close()
            parts.append((st["path"], st["name"]))
            st.update(fh=None, path=None)

    def on_end() -> None:
        st["ended"] = True

    callbacks = dict(on_part_begin=on_part_begin, on_header_field=on_header_field, on_header_value=on_header_value,
                     on_header_end=on_header_end, on_headers_finished=on_headers_finished, on_part_data=on_part_data,
                     on_part_end=on_part_end, on_end=on_end)
    parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
    total = 0
    try:
        async for chunk in request.stream():
            total += len(chunk)
            if total > max_bytes:
                raise UploadError(413, f"upload too large: more than {_mb(max_bytes)} (limit per upload)")
            parser.write(chunk)
            if st["error"] is not None:
                raise st["error"]
        parser.finalize()
        if not st["ended"]:
            raise UploadError(400, "the upload was cut off before its end (truncated multipart data)")
    except FormParserError as e:
        _cleanup(st, parts)
        raise UploadError(400, f"malformed multipart upload ({' '.join(str(e).split())[:120]})") from None
    except BaseException:
        _cleanup(st, parts)
        raise
    return parts


def _cleanup(st: dict, parts: list[tuple[Path, str]]) -> None:
    if st["fh"] is not None:
        st["fh"].close()
    if st["path"] is not None:
        st["path"].unlink(missing_ok=True)
    for p, _ in parts:
        p.unlink(missing_ok=True)
