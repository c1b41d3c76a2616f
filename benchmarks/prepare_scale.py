"""Prepare and pre-train at the reference's scale, simulated: N segment rows in prepare's own unit
folders (done-markers and JSON-lines shard indexes, no audio; `tests/merge_reference.py`).

Measured, each in its own process (wall time; peak RSS from wait4):
- merge: the streaming merge (`speechfm.prepare.pipeline.merge`: manifests, split, rejects,
  statistics, segment indexes) against the in-memory merge (a `Segment` object per row, as prepare
  merged before; `tests/merge_reference.py`) while N <= --old-max;
- the training dataset of train.tsv: construction time, and memory from /proc/self/smaps_rollup
  (private = unshared, shared = mapped index pages), fairseq's `FileAudioDataset` against
  `IndexedAudioDataset`; two ranks hold the indexed dataset at once to show the pages are shared;
- planning a 158,000-file archive (walk and lstat of empty files, `--plan-files`);
- the decode rate of one core (FLAC members of a tar shard through the dataset), and the loader
  workers per GPU that `--target` audio-s/s need.
Figures are printed last, with a linear extrapolation to 100 M rows from the two largest N.

    python benchmarks/prepare_scale.py --segments 1000000 10000000
    python benchmarks/prepare_scale.py --segments 20000 --plan-files 2000   # a quick smoke run
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
       "OMP_NUM_THREADS": "1"}
REFERENCE_SEGMENTS = 100_000_000
MB = 1024 * 1024


def child(*args: str) -> tuple[dict, float]:
    """Run `this script --internal ARGS` in a fresh process: (its JSON result, its peak RSS MB)."""
    proc = subprocess.Popen([sys.executable, __file__, "--internal", *args], env=ENV,
                            stdout=subprocess.PIPE, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"child {args} failed with {proc.returncode}")
    return json.loads(out.strip().splitlines()[-1]), usage.ru_maxrss / 1024


def memory() -> dict[str, float]:
    """This process's resident memory (MB) from smaps_rollup: `anon` (heap: this process's
    alone), `file` (mapped file pages: the page cache, one copy for every process mapping them),
    `private` / `shared` (pages mapped by this process only / also by another one)."""
    fields = {}
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines()[1:]:
        key, value = line.split(":", 1)
        fields[key] = int(value.split()[0]) / 1024
    return {"rss": fields["Rss"], "anon": fields["Anonymous"],
            "file": fields["Rss"] - fields["Anonymous"],
            "private": fields["Private_Clean"] + fields["Private_Dirty"],
            "shared": fields["Shared_Clean"] + fields["Shared_Dirty"]}


def units_of(out: Path) -> list:
    from speechfm.prepare.discover import Unit

    return [Unit(r["channel"], r["unit"], tuple(r["files"]))
            for r in (json.loads(p.read_text()) for p in sorted(out.glob("shards/*/*.done.json")))]


def internal(what: str, *args: str) -> dict:
    """The measured step of a child process."""
    if what == "merge":
        from speechfm.prepare.config import PrepareConfig
        from speechfm.prepare.pipeline import merge

        out = Path(args[0])
        units = units_of(out)
        t0 = time.perf_counter()
        summary = merge(out, units, PrepareConfig(), workers=int(args[1]))
        return {"wall_s": time.perf_counter() - t0, "segments": summary["segments"]}
    if what == "old_merge":
        from speechfm.prepare import stats
        from speechfm.prepare.config import PrepareConfig
        from tests.helpers.merge_reference import reference_merge

        out = Path(args[0])
        units = units_of(out)
        t0 = time.perf_counter()
        files = reference_merge(out, units, PrepareConfig())
        target = out / "old_merge"
        for name, data in files.items():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            (target / name).write_bytes(data)
        stats.write(json.loads(files["stats.json"]), target)  # the plot too, as prepare does
        return {"wall_s": time.perf_counter() - t0}
    if what == "dataset":
        return dataset_memory(Path(args[0]), args[1], args[2] if len(args) > 2 else "")
    if what == "plan":
        from speechfm.prepare.discover import plan_units

        t0 = time.perf_counter()
        units = plan_units(Path(args[0]), "month")
        return {"wall_s": time.perf_counter() - t0, "units": len(units),
                "files": sum(len(u.files) for u in units)}
    if what == "decode":
        return decode_rate(Path(args[0]), args[1], int(args[2]))
    raise SystemExit(f"unknown step {what}")


def dataset_memory(manifest: Path, kind: str, barrier: str) -> dict:
    """Construct one training rank's dataset of `manifest`, touch its sizes as fairseq's batching
    does; memory added by it. With `barrier` (a folder), wait there for a second rank."""
    import numpy as np
    from fairseq.data import FileAudioDataset

    from speechfm.engine.fairseq.indexed_audio import IndexedAudioDataset

    cls = IndexedAudioDataset if kind == "indexed" else FileAudioDataset
    before = memory()
    t0 = time.perf_counter()
    dataset = cls(str(manifest), 16_000, max_sample_size=960_000, min_sample_size=32_000)
    built = time.perf_counter() - t0
    total = int(np.minimum(dataset.sizes, dataset.max_sample_size).sum())  # every size read
    if kind == "indexed":  # every column read, as a long training run ends up doing
        index = dataset.index
        total += int(index.offsets.sum() % 7 + index.sizes.sum() % 7)
    if barrier:
        Path(barrier, f"{os.getpid()}").touch()
        while len(list(Path(barrier).iterdir())) < 2:
            time.sleep(0.05)
        time.sleep(0.5)
    after = memory()
    result = {"build_s": built, "rows": len(dataset), "checksum": total}
    result.update({f"{k}_mb": after[k] - before[k] for k in after})
    if not barrier:  # an epoch's order and batches, as fairseq's iterator makes and keeps them
        t0 = time.perf_counter()
        np.random.seed(1)
        batches = dataset.batch_by_size(dataset.ordered_indices(), max_tokens=2_800_000)
        result.update(batching_s=time.perf_counter() - t0, batches=len(batches),
                      batching_anon_mb=memory()["anon"] - after["anon"])
    if barrier:
        Path(barrier, f"{os.getpid()}.done").touch()
        while len([p for p in Path(barrier).iterdir() if p.suffix == ".done"]) < 2:
            time.sleep(0.05)
    return result


def decode_rate(manifest: Path, kind: str, passes: int) -> dict:
    """Audio seconds decoded per CPU second on one thread: `passes` over every item."""
    import torch
    from fairseq.data import FileAudioDataset

    from speechfm.engine.fairseq.indexed_audio import IndexedAudioDataset

    torch.set_num_threads(1)
    cls = IndexedAudioDataset if kind == "indexed" else FileAudioDataset
    dataset = cls(str(manifest), 16_000)
    dataset[0]  # files opened, code warm
    cpu0, samples = time.process_time(), 0
    for _ in range(passes):
        for i in range(len(dataset)):
            samples += dataset[i]["source"].numel()
    cpu = time.process_time() - cpu0
    return {"audio_s": samples / 16_000, "cpu_s": cpu, "rate": samples / 16_000 / cpu}


def planning_tree(root: Path, files: int) -> Path:
    """`files` empty broadcast hours: channel/YYYY/MM/DD/channel_HH00-HH00.ts, 24 a day."""
    stamp = root / ".complete"
    if stamp.exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    days = -(-files // 24)
    channels = max(1, round(days / 365))
    made = 0
    for d in range(days):
        channel, day = d % channels, d // channels
        folder = root / f"ch{channel:02d}" / f"{2000 + day // 336}/{day // 28 % 12 + 1:02d}" \
                                             f"/{day % 28 + 1:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        for h in range(min(24, files - made)):
            (folder / f"ch{channel:02d}_{h:02d}00-{(h + 1) % 24:02d}00.ts").touch()
        made += min(24, files - made)
    stamp.touch()
    return root


def decode_data(root: Path) -> Path:
    """Broadcast speech as the training reads it: a synthesized archive (speech over music and
    noise, AAC/MP2) prepared by `speechfm prepare` (fast VAD); returns its train.tsv."""
    out = root / "prepared"
    if not (out / "manifests" / "train.idx").exists():
        demo = root / "demo"
        shutil.rmtree(demo, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "speechfm", "-q", "synth", "--out", str(demo),
                        "--channels", "4", "--days", "1", "--hours-per-day", "1",
                        "--hour-seconds", "120", "--train-utterances", "1", "--valid-utterances", "1", "--test-utterances", "1"],
                       check=True, env=ENV, stdout=subprocess.DEVNULL)
        subprocess.run([sys.executable, "-m", "speechfm", "-q", "prepare", str(demo / "archive"),
                        "--out", str(out), "--vad", "webrtc", "--workers", "2"], check=True,
                       env=ENV, stdout=subprocess.DEVNULL)
    return out / "manifests" / "train.tsv"


def extrapolate(points: dict[int, float], n: int) -> float:
    """Linear in the number of rows through the two largest sizes (proportional from one)."""
    pts = sorted(points.items())
    if len(pts) == 1:
        return pts[0][1] / pts[0][0] * n
    (n1, y1), (n2, y2) = pts[-2:]
    return y2 + (y2 - y1) / (n2 - n1) * (n - n2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--segments", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--old-max", type=int, default=1_000_000,
                    help="largest N for the in-memory merge (~0.75 GB and ~3 min per million)")
    ap.add_argument("--workers", type=int, default=2, help="merge threads (prepare's --workers)")
    ap.add_argument("--plan-files", type=int, default=158_000)
    ap.add_argument("--target", type=float, default=4000.0, help="audio-s/s per GPU to feed")
    ap.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "speechfm_scale")
    ap.add_argument("--keep", action="store_true", help="keep the synthesized unit folders")
    ap.add_argument("--internal", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.internal:
        print(json.dumps(internal(*args.internal)))
        return
    from tests.helpers.merge_reference import synthesize_units

    figures: dict[str, dict] = {}
    args.data.mkdir(parents=True, exist_ok=True)
    for n in sorted(args.segments):
        out = args.data / f"units_{n}"
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.perf_counter()
        synthesize_units(out, n)
        print(f"[{n:,}] synthesized in {time.perf_counter() - t0:.0f} s", flush=True)
        row: dict[str, float] = {}
        result, peak = child("merge", str(out), str(args.workers))
        row.update(merge_s=result["wall_s"], merge_peak_mb=peak)
        print(f"[{n:,}] streaming merge {result['wall_s']:.1f} s, peak {peak:.0f} MB", flush=True)
        if n <= args.old_max:
            result, peak = child("old_merge", str(out))
            row.update(old_merge_s=result["wall_s"], old_merge_peak_mb=peak)
            print(f"[{n:,}] in-memory merge {result['wall_s']:.1f} s, peak {peak:.0f} MB",
                  flush=True)
            for name in ("manifests/train.tsv", "manifests/valid.tsv", "stats.json",
                         "rejects.jsonl"):
                same = (out / name).read_bytes() == (out / "old_merge" / name).read_bytes()
                assert same, f"{name} differs between the merges"
        manifest = out / "manifests" / "train.tsv"
        for kind in ("file", "indexed"):
            result, peak = child("dataset", str(manifest), kind)
            row.update({f"{kind}_build_s": result["build_s"], f"{kind}_anon_mb": result["anon_mb"],
                        f"{kind}_file_mb": result["file_mb"], f"{kind}_peak_mb": peak,
                        f"{kind}_batching_s": result["batching_s"],
                        f"{kind}_batching_anon_mb": result["batching_anon_mb"]})
            print(f"[{n:,}] {kind} dataset: {result}", flush=True)
        barrier = args.data / f"barrier_{n}"
        shutil.rmtree(barrier, ignore_errors=True)
        barrier.mkdir()
        ranks = [subprocess.Popen([sys.executable, __file__, "--internal", "dataset",
                                   str(manifest), "indexed", str(barrier)], env=ENV,
                                  stdout=subprocess.PIPE, text=True) for _ in range(2)]
        two = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in ranks]
        shutil.rmtree(barrier)
        row.update(two_ranks_private_mb=max(r["private_mb"] for r in two),
                   two_ranks_shared_mb=min(r["shared_mb"] for r in two))
        index_bytes = sum(p.stat().st_size for p in (out / "manifests" / "train.idx").iterdir())
        row.update(index_bytes_per_row=index_bytes / result["rows"], rows=result["rows"])
        figures[str(n)] = row
        if not args.keep:
            shutil.rmtree(out)

    tree = planning_tree(args.data / f"plan_{args.plan_files}", args.plan_files)
    plan, _ = child("plan", str(tree))
    manifest = decode_data(args.data)
    decode = {kind: child("decode", str(manifest), kind, "20")[0] for kind in ("file", "indexed")}

    sizes = {int(k): v for k, v in figures.items()}
    big = {}
    for key in ("merge_s", "merge_peak_mb", "old_merge_s", "old_merge_peak_mb", "file_build_s",
                "file_anon_mb", "file_peak_mb", "indexed_build_s", "indexed_anon_mb",
                "indexed_file_mb", "two_ranks_private_mb", "file_batching_s",
                "indexed_batching_s", "indexed_batching_anon_mb"):
        points = {n: row[key] for n, row in sizes.items() if key in row}
        if points:
            big[key] = extrapolate(points, REFERENCE_SEGMENTS)
    rate = decode["indexed"]["rate"]
    print("\n=== figures (under load where other processes share the cores) ===")
    for n, row in sizes.items():
        print(f"N = {n:,}: " + ", ".join(f"{k} {v:,.3g}" for k, v in row.items()))
    print(f"N = {REFERENCE_SEGMENTS:,} (extrapolated, linear): " + ", ".join(
        f"{k} {v:,.4g}" for k, v in big.items()))
    print(f"planning {plan['files']:,} files in {plan['units']:,} units: {plan['wall_s']:.2f} s")
    print(f"decode on one core: FileAudioDataset {decode['file']['rate']:,.0f}, "
          f"IndexedAudioDataset {rate:,.0f} audio-s per CPU-s "
          f"({decode['indexed']['audio_s']:,.0f} audio-s); {args.target:,.0f} audio-s/s per GPU "
          f"need {math.ceil(args.target / rate)} loader workers (one core each)")
    print(json.dumps({"figures": figures, "extrapolated_100M": big, "plan": plan,
                      "decode": decode}, indent=1))


if __name__ == "__main__":
    main()
