"""Test helper: fairseq manifests over an uncompressed tar shard, exactly as `prepare` writes them
(`shards/<channel>/<unit>.tar:offset:size<TAB>frames`), built from the demo's labeled FLACs."""

from __future__ import annotations

import tarfile
from pathlib import Path

import soundfile as sf

from speechfm.core.labeled import read_table


def make_shard_manifest(demo: Path, out: Path, copies: int = 1) -> Path:
    """Pack the labeled train+valid FLACs (`copies` times) into `out/shards/demo/0001.tar`;
    write `out/manifests/{train,valid}.tsv`. Returns the manifest directory."""
    shard = out / "shards" / "demo" / "0001.tar"
    shard.parent.mkdir(parents=True, exist_ok=True)
    manifests = out / "manifests"
    manifests.mkdir(parents=True, exist_ok=True)
    frames: dict[str, int] = {}
    with tarfile.open(shard, "w") as tar:
        for split in ("train", "valid"):
            for path, _ in read_table(demo / "labeled" / f"{split}.tsv"):
                for copy in range(copies):
                    name = f"{split}/{copy}/{path.name}"
                    tar.add(str(path), arcname=name)
                    frames[name] = sf.info(str(path)).frames
    lines: dict[str, list[str]] = {"train": [], "valid": []}
    with tarfile.open(shard) as tar:  # data offsets are known once the members are written
        for info in tar.getmembers():
            lines[info.name.split("/")[0]].append(
                f"shards/demo/0001.tar:{info.offset_data}:{info.size}\t{frames[info.name]}")
    for split, rows in lines.items():
        (manifests / f"{split}.tsv").write_text("\n".join([str(out.resolve()), *rows]) + "\n")
    return manifests
