"""The demo broadcast archive: MPEG-TS hours with ground truth, laid out like a real TV/radio archive.

`channel/YYYY/MM/DD/channel_HHMM-HHMM.ts`, each with `<name>.truth.json` beside it listing every
speech interval (with its sentence) and every music, noise, jingle and silence interval.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np

from speechfm.core.constants import GROUND_TRUTH_SUFFIX
from speechfm.core.errors import SpeechfmError, require_tool
from speechfm.synth import sounds

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

    @property
    def relpath(self) -> Path:
        c, d = self.channel.name, self.day
        stem = f"{c}_{self.hour:02d}00-{(self.hour + 1) % 24:02d}00"
        return Path(c) / f"{d.year:04d}" / f"{d.month:02d}" / f"{d.day:02d}" / f"{stem}.ts"


def plan_hours(
    channels: list[Channel], start: date, days: int, hours_per_day: int, first_hour: int,
    seconds: float, seed: int,
) -> list[HourSpec]:
    specs = []
    for ci, channel in enumerate(channels):
        for d in range(days):
            for h in range(hours_per_day):
                hour = (first_hour + h) % 24
                specs.append(
                    HourSpec(channel, start + timedelta(days=d), hour, seconds,
                             seed=(seed, ci, d, h))
                )
    return specs


# A programme deals its events from a shuffled deck holding each kind this many times, so every
# kind turns up in every dozen events (random draws left short demo files without some kinds).
EVENT_DECK = {"speech": 5, "speech_over_music": 1, "music": 2, "noise": 1, "jingle": 1,
              "silence": 1}


def compose(spec: HourSpec, sentences: list[str]) -> tuple[np.ndarray, list[dict]]:
    """Mix one hour's programme at the channel's rate; return audio and ground-truth intervals."""
    rng = np.random.default_rng(spec.seed)
    rate = spec.channel.sample_rate
    total = int(spec.seconds * rate)
    out = np.zeros(total, dtype=np.float32)
    intervals: list[dict] = []
    pos = 0
    deck: list[str] = []

    def add(kind: str, audio: np.ndarray, gain_db: float, at: int, **extra) -> int:
        n = min(len(audio), total - at)
        if n <= 0:
            return at
        out[at : at + n] += audio[:n] * sounds.db(gain_db)
        intervals.append({"start": round(at / rate, 3), "end": round((at + n) / rate, 3),
                          "kind": kind, **extra})
        return at + n

    while pos < total - rate // 2:
        if not deck:
            deck = [k for k, count in EVENT_DECK.items() for _ in range(count)]
            rng.shuffle(deck)
        kind = deck.pop()
        if kind in ("speech", "speech_over_music"):
            voice = sounds.Voice.sample(rng)
            gain = float(rng.uniform(-12, -2))
            block_start = pos
            for _ in range(int(rng.integers(1, 5))):
                text = str(rng.choice(sentences))
                pos = add("speech", sounds.speak(text, voice, rate), gain, pos,
                          text=text, voice=voice.name,
                          background="music" if kind == "speech_over_music" else None)
                pause = float(rng.uniform(0.25, 0.9))
                pos = min(total, pos + int(pause * rate))
            if kind == "speech_over_music":
                bed = sounds.music(rng, (pos - block_start) / rate, rate)
                add("music", bed, gain - float(rng.uniform(12, 18)), block_start, bed=True)
        elif kind == "music":
            pos = add("music", sounds.music(rng, rng.uniform(5, 15), rate),
                      float(rng.uniform(-16, -3)), pos, bed=False)
        elif kind == "noise":
            pos = add("noise", sounds.noise(rng, rng.uniform(3, 8), rate),
                      float(rng.uniform(-30, -10)), pos)
        elif kind == "jingle":
            pos = add("jingle", sounds.jingle(rng, rng.uniform(2, 4), rate),
                      float(rng.uniform(-10, -3)), pos)
        else:
            pos = add("silence", sounds.silence(rng, rng.uniform(1, 3), rate), 0.0, pos)
    out += sounds.silence(rng, spec.seconds, rate)[:total]  # broadcast noise floor
    intervals.sort(key=lambda iv: (iv["start"], iv["kind"]))
    return np.clip(out, -1.0, 1.0), intervals


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


def write_hour(spec: HourSpec, root: Path, sentences: list[str]) -> Path:
    """Write one hour and its ground truth; an existing complete pair is kept as it is."""
    path = root / spec.relpath
    truth_path = path.with_name(path.stem + GROUND_TRUTH_SUFFIX)
    if path.exists() and truth_path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    audio, intervals = compose(spec, sentences)
    encode_ts(audio, spec, path)
    truth = {
        "file": spec.relpath.as_posix(),
        "channel": asdict(spec.channel),
        "duration": spec.seconds,
        "intervals": intervals,
    }
    tmp = truth_path.with_name(truth_path.name + ".part")
    tmp.write_text(json.dumps(truth, ensure_ascii=False, indent=1), encoding="utf-8")
    os.replace(tmp, truth_path)
    return path
