"""Test helper: fairseq letter-target fine-tuning data (.tsv, .ltr, .wrd, dict.ltr.txt) for the
demo's labeled train/valid splits."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import soundfile as sf

from speechfm.core.labeled import read_table


def _letters(text: str) -> list[str]:
    words = re.sub(r"[^a-zåäö ]", "", text.lower()).split()
    return [c for w in words for c in [*w, "|"]]


def write_labeled(demo: Path, out: Path) -> Path:
    """fairseq letter-target data for the demo's labeled train/valid splits."""
    out.mkdir(parents=True)
    counts: Counter[str] = Counter()
    for split in ("train", "valid"):
        rows = read_table(demo / "labeled" / f"{split}.tsv")
        lines = [str(demo / "labeled")]
        letters = []
        for path, text in rows:
            lines.append(f"{path.relative_to((demo / 'labeled').resolve())}\t{sf.info(path).frames}")
            letters.append(_letters(text))
            counts.update(letters[-1])
        (out / f"{split}.tsv").write_text("\n".join(lines) + "\n")
        (out / f"{split}.ltr").write_text("\n".join(" ".join(x) for x in letters) + "\n")
        (out / f"{split}.wrd").write_text(
            "\n".join("".join(x).replace("|", " ").strip() for x in letters) + "\n")
    (out / "dict.ltr.txt").write_text("".join(f"{c} {n}\n" for c, n in counts.most_common()))
    return out
