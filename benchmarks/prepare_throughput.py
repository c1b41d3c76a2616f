"""Throughput of `speechfm prepare` against a faithful re-creation of the reference flow and
against ffmpeg decoding alone, on the same generated archive; and the 1,000,000-row split.

(a) speechfm prepare, 1 and 2 workers, per VAD mode; (b) the reference flow with the same VAD:
ffmpeg to FLAC files, VAD reading those files, segment files written, `tar -r` appends per month,
files deleted, manifest by rescanning the tar; (c) ffmpeg decode alone (the floor).
Figures: audio hours per CPU hour (user+sys of every process) and wall time.

    /work/main/.venv/bin/python benchmarks/prepare_throughput.py [--seconds 180] [--data DIR] [--no-marginal]

Unless --no-marginal, (a) webrtc with 1 worker and (c) run again on the same files twice as long:
the difference is the cost per extra audio hour, without what a run pays once.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}


def measured(cmd: list[str]) -> tuple[float, float]:
    """(wall s, CPU s of the command and all its children) of one subprocess run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=ENV, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def reference_flow(archive: Path, out: Path, vad: str) -> None:
    """The reference's steps, serially, with speechfm's VAD so only the pipeline differs."""
    import soundfile as sf

    from speechfm.core.constants import SAMPLE_RATE
    from speechfm.core.vad import segments_of
    from speechfm.prepare.config import PrepareConfig
    from speechfm.prepare.discover import plan_units

    config = PrepareConfig(vad=vad)
    flac_root, seg_root = out / "flac", out / "segments"
    sizes: dict[str, int] = {}
    for unit in plan_units(archive, "month"):
        for source in unit.files:  # step 1: convert to a FLAC tree
            dst = flac_root / Path(source).with_suffix(".flac")
            dst.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i",
                            str(archive / source), "-c:a", "flac", "-sample_fmt", "s16", "-ar",
                            "16000", "-ac", "1", "-vn", "-dn", "-sn", "-threads", "1", str(dst)],
                           check=True)
        month_files = []
        for source in unit.files:  # step 2: VAD reads the FLAC files, writes segment files
            samples, _ = sf.read(flac_root / Path(source).with_suffix(".flac"), dtype="int16")
            pieces, _ = segments_of(samples, config.vad_config)
            for a, b in pieces:
                name = f"{Path(source).stem}_{a}_{b}.flac"
                seg_root.mkdir(parents=True, exist_ok=True)
                sf.write(seg_root / name, samples[a:b], SAMPLE_RATE, format="FLAC",
                         subtype="PCM_16")
                sizes[name] = b - a
                month_files.append(name)
        tar = out / f"{unit.channel}_{unit.name[:4]}.tar"  # one tar per channel and year
        if month_files:
            subprocess.run(["tar", "-rf", str(tar), "-C", str(seg_root), *month_files], check=True)
            for name in month_files:
                (seg_root / name).unlink()
    with open(out / "train.tsv", "w") as f:  # manifest by rescanning every tar
        f.write(f"{out}\n")
        for tar_path in sorted(out.glob("*.tar")):
            with tarfile.open(tar_path) as tar:
                f.writelines(f"{tar_path.name}:{m.offset_data}:{m.size}\t{sizes[m.name]}\n" for m in tar)


def decode_only(archive: Path) -> None:
    from speechfm.core.audio import ffmpeg_pcm_command
    from speechfm.prepare.discover import find_media

    for path in find_media(archive):
        subprocess.run(ffmpeg_pcm_command(path), check=True, stdout=subprocess.DEVNULL)


def split_benchmark(rows: int = 1_000_000) -> dict[str, float]:
    """Seconds to split `rows` segments of 4 channels (by source file, 600 segments each) and to
    write train/valid manifests with their segment indexes."""
    import numpy as np

    from speechfm.prepare.columns import SegmentColumns
    from speechfm.prepare.manifests import valid_rows, write_manifests

    rng = np.random.default_rng(0)
    per_unit = rows // 48  # 4 channels x 12 months
    source = np.arange(rows, dtype=np.int32) // 600
    cols = SegmentColumns(
        channels=[f"ch{u % 4}" for u in range(48)],
        shards=[f"shards/ch{u % 4}/2021-{u // 4 + 1:02d}.tar" for u in range(48)],
        sources=[f"s{i}.ts" for i in range(int(source[-1]) + 1)],
        source_channel=[f"ch{(i * 600 // per_unit) % 4}" for i in range(int(source[-1]) + 1)],
        unit_rows=np.minimum(np.arange(49, dtype=np.int64) * per_unit, rows),
        shard=np.minimum(np.arange(rows) // per_unit, 47).astype(np.int32),
        offset=np.arange(rows, dtype=np.int64) * 512, size=np.full(rows, 1000, np.uint32),
        frames=rng.integers(32_000, 480_000, rows).astype(np.int32), source=source)
    cols.unit_rows[-1] = rows
    t0 = time.perf_counter()
    valid_rows(cols, 2.0, 0.1, 0)
    split_only = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        write_manifests(Path(tmp), cols, 2.0, 0.1, 0)
        with_writing = time.perf_counter() - t0
    return {"rows": rows, "split_s": round(split_only, 3), "split_and_write_s": round(with_writing, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=180.0, help="length of each archive file")
    ap.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "speechfm_bench")
    ap.add_argument("--no-marginal", dest="marginal", action="store_false",
                    help="skip the run on files twice as long (marginal cost per audio hour)")
    ap.add_argument("--internal", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.internal:  # a timed child process: (b) or (c)
        what, archive, out = args.internal
        if what == "decode":
            decode_only(Path(archive))
        else:
            reference_flow(Path(archive), Path(out), what.split(":")[1])
        return

    py = sys.executable

    def synth(seconds: float) -> Path:
        demo = args.data / f"demo_{int(seconds)}"
        subprocess.run([py, "-m", "speechfm", "-q", "synth", "--out", str(demo), "--channels", "4",
                        "--days", "2", "--hours-per-day", "1", "--hour-seconds", str(seconds),
                        "--train-utterances", "1", "--valid-utterances", "1", "--test-utterances", "1"], check=True, env=ENV,
                       stdout=subprocess.DEVNULL)
        return demo / "archive"

    archive = synth(args.seconds)
    from speechfm.prepare.discover import find_media

    audio_hours = len(find_media(archive)) * args.seconds / 3600
    results = {}

    def run_once(cmd: list[str]) -> tuple[float, float]:
        work = args.data / "work"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        return measured([c.replace("{work}", str(work)) for c in cmd])

    def store(name: str, wall: float, cpu: float, hours: float) -> None:
        results[name] = {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
                         "audio_h_per_cpu_h": round(hours / (cpu / 3600), 1),
                         "x_realtime_wall": round(hours * 3600 / wall, 1)}
        print(name, results[name], flush=True)

    def record(name: str, cmd: list[str]) -> None:
        store(name, *run_once(cmd), audio_hours)

    record("c_decode_only", [py, __file__, "--internal", "decode", str(archive), "-"])
    for vad in ("webrtc", "silero"):
        for workers in (1, 2):
            record(f"a_speechfm_{vad}_{workers}w",
                   [py, "-m", "speechfm", "-q", "prepare", str(archive), "--out", "{work}/out",
                    "--vad", vad, "--workers", str(workers)])
        record(f"b_reference_{vad}", [py, __file__, "--internal", f"ref:{vad}", str(archive),
                                      "{work}"])
    r = results
    ratios = {}
    for vad in ("webrtc", "silero"):
        ratios[f"{vad}: (a) 1 worker vs (b) reference, CPU"] = (
            r[f"b_reference_{vad}"]["cpu_s"] / r[f"a_speechfm_{vad}_1w"]["cpu_s"])
        ratios[f"{vad}: 2 workers vs 1 worker, wall"] = (
            r[f"a_speechfm_{vad}_1w"]["wall_s"] / r[f"a_speechfm_{vad}_2w"]["wall_s"])
    ratios["webrtc: (a) 1 worker CPU / (c) decode CPU"] = (
        r["a_speechfm_webrtc_1w"]["cpu_s"] / r["c_decode_only"]["cpu_s"])
    ratios["silero: (a) 1 worker, x real time per core"] = (
        audio_hours * 3600 / r["a_speechfm_silero_1w"]["cpu_s"])
    if args.marginal:
        # The same files twice as long: the difference is the cost of the extra audio alone, without
        # what a run pays once (interpreter start, imports, the statistics plot, manifests).
        # A difference of two noisy runs is noisier still, and this VM's speed drifts over
        # minutes: the four series run interleaved, 3 rounds, and each keeps its fastest run.
        longer = synth(2 * args.seconds)
        series = {}
        for tag, arch, hours in (("1x", archive, audio_hours), ("2x", longer, 2 * audio_hours)):
            series[f"c_decode_only_{tag}_best3"] = (
                [py, __file__, "--internal", "decode", str(arch), "-"], hours)
            series[f"a_speechfm_webrtc_1w_{tag}_best3"] = (
                [py, "-m", "speechfm", "-q", "prepare", str(arch), "--out", "{work}/out",
                 "--vad", "webrtc", "--workers", "1"], hours)
        runs: dict[str, list[tuple[float, float]]] = {name: [] for name in series}
        for _ in range(3):
            for name, (cmd, _hours) in series.items():
                runs[name].append(run_once(cmd))
        for name, (_cmd, hours) in series.items():
            store(name, min(w for w, _ in runs[name]), min(c for _, c in runs[name]), hours)
        ratios["webrtc: (a) / (c), marginal CPU per extra audio hour"] = (
            (r["a_speechfm_webrtc_1w_2x_best3"]["cpu_s"] - r["a_speechfm_webrtc_1w_1x_best3"]["cpu_s"])
            / (r["c_decode_only_2x_best3"]["cpu_s"] - r["c_decode_only_1x_best3"]["cpu_s"]))
        ratios["webrtc: (a) / (c), whole runs, fastest of 3"] = (
            r["a_speechfm_webrtc_1w_1x_best3"]["cpu_s"] / r["c_decode_only_1x_best3"]["cpu_s"])
    results["ratios"] = {k: round(v, 2) for k, v in ratios.items()}
    results["audio_hours"] = round(audio_hours, 3)
    results["split_1M"] = split_benchmark()
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
