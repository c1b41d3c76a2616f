"""Settings of `speechfm prepare`, with defaults that follow the reference recipe."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from speechfm.core.errors import SpeechfmError
from speechfm.core.vad import VadConfig

UNITS = ("day", "month", "year")
SPLIT_FIELDS = ("valid_hours", "valid_share", "seed")
ADDED_SINCE = {"fingerprint": False}  # unit settings added later, as units made before them are


@dataclass(frozen=True)
class PrepareConfig(VadConfig):
    """What a unit is, how speech is found and cut (the `VadConfig` fields, flat, as site files
    and the command line give them), and how the validation sets are drawn."""

    unit: str = "month"  # one shard group per channel x day | month | year
    shard_max_bytes: int = 2 * 1024**3  # a unit's shard is split when it grows beyond this
    fingerprint: bool = True  # an audio fingerprint per segment (`<shard>.fp.npz`) for `dedup`
    valid_hours: float = 2.0  # validation hours drawn per channel
    valid_share: float = 0.1  # ... at most this share of a channel (small data)
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.unit not in UNITS:
            raise SpeechfmError(f"unknown unit '{self.unit}'", hint=f"choose one of {UNITS}")

    @property
    def vad_config(self) -> VadConfig:
        """Only the VAD settings (what the shared VAD functions take)."""
        return VadConfig(**{f.name: getattr(self, f.name) for f in fields(VadConfig)})

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
