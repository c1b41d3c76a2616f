"""Settings of `speechfm prepare`, with defaults that follow the reference recipe."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from speechfm.constants import MAX_SEGMENT_SECONDS, MIN_SEGMENT_SECONDS
from speechfm.errors import SpeechfmError

UNITS = ("day", "month", "year")
VAD_MODES = ("silero", "webrtc")
SPLIT_FIELDS = ("valid_hours", "valid_share", "seed")
ADDED_SINCE = {"fingerprint": False}  # unit settings added later, as units made before them are


@dataclass(frozen=True)
class PrepareConfig:
    """What a unit is, how speech is found and cut, and how the validation sets are drawn."""

    unit: str = "month"  # one shard group per channel x day | month | year
    vad: str = "silero"  # "silero" rejects music and noise; "webrtc" is the fast mode
    webrtc_aggressiveness: int = 3  # 0 (keeps most) .. 3 (keeps least)
    webrtc_frame_ms: int = 30  # 10, 20 or 30
    silero_onset: float = 0.5  # speech starts when the probability rises above this
    silero_offset: float = 0.35  # and ends when it falls below this
    min_gap: float = 0.3  # gaps shorter than this (s) are bridged (hangover)
    min_speech: float = 0.25  # speech runs shorter than this (s) are ignored
    padding: float = 0.1  # seconds kept on each side of a speech region
    max_seconds: float = MAX_SEGMENT_SECONDS  # longer regions are cut into pieces of this length
    min_seconds: float = MIN_SEGMENT_SECONDS  # shorter pieces are dropped
    shard_max_bytes: int = 2 * 1024**3  # a unit's shard is split when it grows beyond this
    fingerprint: bool = True  # an audio fingerprint per segment (`<shard>.fp.npz`) for `dedup`
    valid_hours: float = 2.0  # validation hours drawn per channel
    valid_share: float = 0.1  # ... at most this share of a channel (small data)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.unit not in UNITS:
            raise SpeechfmError(f"unknown unit '{self.unit}'", hint=f"choose one of {UNITS}")
        if self.vad not in VAD_MODES:
            raise SpeechfmError(f"unknown VAD mode '{self.vad}'", hint=f"choose one of {VAD_MODES}")
        if self.webrtc_frame_ms not in (10, 20, 30):
            raise SpeechfmError("webrtc_frame_ms must be 10, 20 or 30")
        if not 0 <= self.webrtc_aggressiveness <= 3:
            raise SpeechfmError("webrtc_aggressiveness must be 0..3")
        if self.min_seconds > self.max_seconds:
            raise SpeechfmError("min_seconds is larger than max_seconds")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def unit_settings(self) -> dict[str, Any]:
        """The settings that shape a unit's shards (the split settings only shape manifests)."""
        return {k: v for k, v in asdict(self).items() if k not in SPLIT_FIELDS}

    @staticmethod
    def recorded_settings(recorded: dict[str, Any]) -> dict[str, Any]:
        """A done-marker's settings completed with what a unit built before a setting existed
        has: units prepared before fingerprints have none."""
        return {**ADDED_SINCE, **recorded}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str | Path | None = None) -> PrepareConfig:
        """Build from a mapping (a site file's `prepare:` section); unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SpeechfmError(f"unknown prepare settings {unknown}", path=source,
                                hint=f"known: {sorted(known)}")
        return cls(**data)
