"""Test helpers on files: a digest of every file under a folder, a text file's lines."""

from __future__ import annotations

import hashlib
from pathlib import Path


def tree_digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*")) if p.is_file()
    }



def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()
