"""A cheap inventory of an archive: every file's path, size and modification time.

`dvc.yaml` makes prepare depend on this small table instead of on the archive itself, so DVC never
reads (md5s) the raw broadcast files (well over 100 TB at 158,000 hours) to decide whether prepare
is up to date. The walk is `os.scandir` with one `lstat` per file: metadata calls only, no file is
opened. Links to directories are not followed; hidden entries (`.name`) are left out.
"""

from __future__ import annotations

import os
from pathlib import Path

from speechfm.core.errors import SpeechfmError

HEADER = "path\tbytes\tmtime_ns\n"


def walk(root: Path) -> list[tuple[str, int, int]]:
    """(path relative to `root`, bytes, mtime in ns) of every file under `root`, sorted by path."""
    if not root.is_dir():
        raise SpeechfmError("archive folder not found", path=root)
    rows: list[tuple[str, int, int]] = []
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        try:
            with os.scandir(os.path.join(root, rel_dir) if rel_dir else root) as entries:
                for entry in entries:
                    if entry.name.startswith("."):
                        continue
                    rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(rel)
                    else:
                        st = entry.stat(follow_symlinks=False)
                        rows.append((rel, st.st_size, st.st_mtime_ns))
        except OSError as exc:
            raise SpeechfmError(f"cannot list the archive: {exc}", path=root / rel_dir) from None
    rows.sort()
    return rows


def render(rows: list[tuple[str, int, int]]) -> str:
    return HEADER + "".join(f"{path}\t{size}\t{mtime}\n" for path, size, mtime in rows)


def write_inventory(root: Path, out: Path) -> tuple[int, bool]:
    """Write the inventory of `root` to `out` (tmp + rename); an unchanged inventory is left as it
    is (same bytes, same mtime). Returns (files, whether the file changed)."""
    rows = walk(root)
    text = render(rows)
    if out.is_file() and out.read_text(encoding="utf-8") == text:
        return len(rows), False
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, out)
    return len(rows), True
