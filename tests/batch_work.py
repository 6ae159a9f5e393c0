"""Per-item functions for the batch-engine tests; they import nothing heavy, so worker processes start fast."""

from __future__ import annotations

import os
from pathlib import Path


def flaky(marks: str, item: int, retry: bool):
    """Item 2's first attempt kills its worker; item 5 kills it every time; item 7 raises.

    Every item that finishes records it in ``marks``; a second finish of the same item raises.
    """
    if (item == 2 and not retry) or item == 5:
        os._exit(3)
    if item == 7:
        raise KeyError("seven")
    with open(Path(marks) / f"done_{item}", "x") as f:  # "x": an item finished twice would fail here
        f.write("1")
    return item * 10, retry
