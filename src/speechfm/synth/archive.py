"""The demo broadcast archive: MPEG-TS hours with ground truth, laid out like a real TV/radio archive.

`channel/YYYY/MM/DD/channel_HHMM-HHMM.ts`, each with `<name>.truth.json` beside it listing every
speech interval (with its sentence) and every music, noise, jingle and silence interval
(`intervals`), the occurrences of repeated material (`repeats`: the channel's ident, adverts, and
the programme itself, which another hour may rerun) and of reused voices and beds that are not
repeats (`near_misses`); see `speechfm.synth.repeats`.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from dataclasses import asdict, dataclass, replace
from datetime import date, timedelta
from pathlib import Path

import numpy as np

from speechfm.core.constants import GROUND_TRUTH_SUFFIX
from speechfm.core.errors import SpeechfmError, require_tool
from speechfm.synth import sounds
from speechfm.synth.repeats import Library

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Channel:
    """A broadcast channel and how its transport stream is encoded."""

    name: str
    kind: str  # "radio" or "tv"
    codec: str  # "mp2" or "aac"
    sample_rate: int  # 44100 or 48000
    channels: int  # 1 or 2


DEFAULT_CHANNELS = (
    Channel("yle_radio_suomi", "radio", "mp2", 48_000, 2),
    Channel("yle_tv1", "tv", "aac", 48_000, 2),
    Channel("radio_nova", "radio", "aac", 44_100, 1),
    Channel("mtv3", "tv", "aac", 44_100, 2),
)


def channels_for(count: int) -> list[Channel]:
    """The first `count` demo channels; beyond four, numbered copies of the same four kinds."""
    out = []
    for i in range(count):
        base = DEFAULT_CHANNELS[i % len(DEFAULT_CHANNELS)]
        suffix = "" if i < len(DEFAULT_CHANNELS) else f"_{i // len(DEFAULT_CHANNELS) + 1}"
        out.append(Channel(base.name + suffix, base.kind, base.codec, base.sample_rate, base.channels))
    return out


@dataclass(frozen=True)
class HourSpec:
    """One broadcast 'hour' of the archive (shortened to `seconds` for the demo)."""

    channel: Channel
    day: date
    hour: int
    seconds: float
    seed: tuple[int, ...]
    original: HourSpec | None = None  # the hour whose programme this one reruns

    @property
    def relpath(self) -> Path:
        c, d = self.channel.name, self.day
        stem = f"{c}_{self.hour:02d}00-{(self.hour + 1) % 24:02d}00"
        return Path(c) / f"{d.year:04d}" / f"{d.month:02d}" / f"{d.day:02d}" / f"{stem}.ts"


def plan_hours(
    channels: list[Channel], start: date, days: int, hours_per_day: int, first_hour: int,
    seconds: float, seed: int,
) -> list[HourSpec]:
    """Every hour of the archive. From the second day on, one channel's first hour a day reruns
    the programme of the previous channel's first hour the day before (so, with the default
    channels, MP2 to AAC on day 2, 48 to 44.1 kHz on day 3)."""
    specs = {}
    for ci, channel in enumerate(channels):
        for d in range(days):
            for h in range(hours_per_day):
                hour = (first_hour + h) % 24
                specs[ci, d, h] = HourSpec(channel, start + timedelta(days=d), hour, seconds,
                                           seed=(seed, ci, d, h))
    for d in range(1, days):
        ci = d % len(channels)
        specs[ci, d, 0] = replace(specs[ci, d, 0],
                                  original=specs[(ci - 1) % len(channels), d - 1, 0])
    return list(specs.values())


# A programme deals its events from a shuffled deck holding each kind this many times, so every
# kind turns up in every dozen events (random draws left short demo files without some kinds).
EVENT_DECK = {"speech": 5, "speech_over_music": 1, "music": 2, "noise": 1, "jingle": 1,
              "silence": 1, "advert": 3}
HOST_SHARE = 0.4  # share of speech blocks read by the channel's host (near-misses for dedup)
BED_SHARE = 0.6  # share of speech-over-music blocks over the channel's own bed (near-misses)


class _Mix:
    """An hour being mixed at one rate: audio, ground-truth intervals, and the occurrences of
    repeated material (`repeats`) and of reused voices and beds (`near_misses`)."""

    def __init__(self, seconds: float, rate: int):
        self.rate = rate
        self.total = int(seconds * rate)
        self.out = np.zeros(self.total, dtype=np.float32)
        self.intervals: list[dict] = []
        self.repeats: list[dict] = []
        self.near_misses: list[dict] = []

    def add(self, kind: str, audio: np.ndarray, gain_db: float, at: int, **extra) -> int:
        n = min(len(audio), self.total - at)
        if n <= 0:
            return at
        self.out[at : at + n] += audio[:n] * sounds.db(gain_db)
        self.intervals.append({"start": self._s(at), "end": self._s(at + n), "kind": kind,
                               **extra})
        return at + n

    def mark(self, target: list[dict], at: int, end: int, **what) -> None:
        """Note an occurrence (clipped to the hour) in `repeats` or `near_misses`."""
        end = min(end, self.total)
        if end > at:
            target.append({**what, "start": self._s(at), "end": self._s(end)})

    def _s(self, samples: int) -> float:
        return round(samples / self.rate, 3)

    def insert(self, other: _Mix, at: int, limit: int) -> int:
        """Mix the first `limit` samples of `other` (same rate) in at `at`, truth included."""
        n = min(limit, self.total - at, other.total)
        self.out[at : at + n] += other.out[:n]
        shift, end = at / self.rate, (at + n) / self.rate
        for src, dst in ((other.intervals, self.intervals), (other.repeats, self.repeats),
                         (other.near_misses, self.near_misses)):
            for item in src:
                a, b = item["start"] + shift, min(item["end"] + shift, end)
                if a < end:
                    dst.append({**item, "start": round(a, 3), "end": round(b, 3)})
        return at + n


def _programme(mix: _Mix, spec: HourSpec, sentences: list[str], library: Library) -> None:
    """Deal the programme of `spec` into `mix` from its start; the same spec and rate always give
    the same audio (a rerun mixes the original's programme again)."""
    rng = np.random.default_rng(spec.seed)
    rate, total = mix.rate, mix.total
    ci = library.channel_index(spec.channel.name)
    host, bed_seed = library.hosts[ci], library.beds[ci]
    pos = 0
    deck: list[str] = []
    while pos < total - rate // 2:
        if not deck:
            deck = [k for k, count in EVENT_DECK.items() for _ in range(count)]
            rng.shuffle(deck)
        kind = deck.pop()
        if kind in ("speech", "speech_over_music"):
            by_host = rng.random() < HOST_SHARE
            voice = host if by_host else sounds.Voice.sample(rng)
            gain = float(rng.uniform(-12, -2))
            block_start = pos
            for _ in range(int(rng.integers(1, 5))):
                text = str(rng.choice(sentences))
                at = pos
                pos = mix.add("speech", sounds.speak(text, voice, rate), gain, pos,
                              text=text, voice=voice.name,
                              background="music" if kind == "speech_over_music" else None)
                if by_host:
                    mix.mark(mix.near_misses, at, pos, id=f"host-{spec.channel.name}",
                             kind="voice")
                pause = float(rng.uniform(0.25, 0.9))
                pos = min(total, pos + int(pause * rate))
            if kind == "speech_over_music":
                seconds = (pos - block_start) / rate
                bed_gain = gain - float(rng.uniform(12, 18))
                if rng.random() < BED_SHARE:
                    end = mix.add("music", library.bed(bed_seed, seconds, rate), bed_gain,
                                  block_start, bed=True)
                    mix.mark(mix.near_misses, block_start, end, id=f"bed-{spec.channel.name}",
                             kind="bed")
                else:
                    mix.add("music", sounds.music(rng, seconds, rate), bed_gain, block_start,
                            bed=True)
        elif kind == "advert":
            advert = library.adverts[int(rng.integers(len(library.adverts)))]
            pos = library.place(mix, advert, float(rng.uniform(-10, -2)), pos)
            pos = min(total, pos + int(float(rng.uniform(0.25, 0.9)) * rate))
        elif kind == "music":
            pos = mix.add("music", sounds.music(rng, rng.uniform(5, 15), rate),
                          float(rng.uniform(-16, -3)), pos, bed=False)
        elif kind == "noise":
            pos = mix.add("noise", sounds.noise(rng, rng.uniform(3, 8), rate),
                          float(rng.uniform(-30, -10)), pos)
        elif kind == "jingle":
            pos = mix.add("jingle", sounds.jingle(rng, rng.uniform(2, 4), rate),
                          float(rng.uniform(-10, -3)), pos)
        else:
            pos = mix.add("silence", sounds.silence(rng, rng.uniform(1, 3), rate), 0.0, pos)


def compose(spec: HourSpec, sentences: list[str], library: Library) -> tuple[np.ndarray, dict]:
    """Mix one hour at the channel's rate: the channel's ident, then the programme (or the rerun of
    another hour's, mixed at that hour's rate and resampled). Returns the audio and the ground
    truth: `intervals`, `repeats` and `near_misses`."""
    rng = np.random.default_rng([*spec.seed, 1])
    rate = spec.channel.sample_rate
    mix = _Mix(spec.seconds, rate)
    ident = library.idents[library.channel_index(spec.channel.name)]
    pos = library.place(mix, ident, float(rng.uniform(-8, -2)), 0)
    pos = min(mix.total, pos + int(rng.uniform(0.3, 0.8) * rate))
    source = spec.original or spec
    programme = _Mix(source.seconds, source.channel.sample_rate)
    _programme(programme, source, sentences, library)
    if programme.rate != rate:
        resampled = _Mix(source.seconds, rate)
        resampled.out = sounds.resample(programme.out, programme.rate, rate)[: resampled.total]
        resampled.total = len(resampled.out)
        for name in ("intervals", "repeats", "near_misses"):
            setattr(resampled, name, getattr(programme, name))
        programme = resampled
    start = pos
    pos = mix.insert(programme, pos, mix.total - pos)
    mix.mark(mix.repeats, start, pos, id=f"programme-{source.relpath.as_posix()}",
             item_start=0.0)
    mix.out += sounds.silence(rng, spec.seconds, rate)[: mix.total]  # broadcast noise floor
    mix.intervals.sort(key=lambda iv: (iv["start"], iv["kind"]))
    truth = {"intervals": mix.intervals,
             "repeats": sorted(mix.repeats, key=lambda r: (r["start"], r["id"])),
             "near_misses": sorted(mix.near_misses, key=lambda r: (r["start"], r["id"]))}
    return np.clip(mix.out, -1.0, 1.0), truth


def encode_ts(audio: np.ndarray, spec: HourSpec, path: Path) -> None:
    """Encode mono float audio to an MPEG-TS file (video stream for TV), bit-exact and atomic."""
    ffmpeg = require_tool("ffmpeg")
    ch = spec.channel
    rate = ch.sample_rate
    if ch.channels == 2:  # a slightly different mix on each side, like a real stereo feed
        pcm = np.stack([audio * 0.95, audio], axis=1)
    else:
        pcm = audio[:, None]
    tmp = path.with_name(path.name + ".part")
    cmd = [ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
           "-f", "f32le", "-ar", str(rate), "-ac", str(ch.channels), "-i", "pipe:0"]
    if ch.kind == "tv":
        cmd += ["-f", "lavfi", "-i",
                f"testsrc2=size=160x90:rate=10:duration={spec.seconds}",
                "-map", "1:v", "-map", "0:a", "-c:v", "mpeg2video", "-b:v", "150k"]
    audio_codec = ["-c:a", "mp2", "-b:a", "192k"] if ch.codec == "mp2" else ["-c:a", "aac", "-b:a", "96k"]
    cmd += audio_codec + [
        "-threads", "1", "-fflags", "+bitexact", "-flags", "+bitexact",
        "-metadata", f"service_name={ch.name}", "-f", "mpegts", str(tmp),
    ]
    proc = subprocess.run(cmd, input=np.ascontiguousarray(pcm, dtype="<f4").tobytes(),
                          capture_output=True, check=False)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise SpeechfmError(f"ffmpeg could not encode: {proc.stderr.decode()[-300:]}", path)
    os.replace(tmp, path)


def write_hour(spec: HourSpec, root: Path, sentences: list[str], library: Library) -> Path:
    """Write one hour and its ground truth; an existing complete pair is kept as it is."""
    path = root / spec.relpath
    truth_path = path.with_name(path.stem + GROUND_TRUTH_SUFFIX)
    if path.exists() and truth_path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    audio, truth = compose(spec, sentences, library)
    encode_ts(audio, spec, path)
    truth = {"file": spec.relpath.as_posix(), "channel": asdict(spec.channel),
             "duration": spec.seconds, **truth}
    tmp = truth_path.with_name(truth_path.name + ".part")
    tmp.write_text(json.dumps(truth, ensure_ascii=False, indent=1), encoding="utf-8")
    os.replace(tmp, truth_path)
    return path
