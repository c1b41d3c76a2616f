"""Settings of `speechfm dedup` (params.yaml `dedup:`), with the defaults measured on the demo."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from speechfm.core.errors import SpeechfmError


@dataclass(frozen=True)
class DedupConfig:
    """When two segments are the same audio, and how much memory the search may use."""

    enabled: bool = True  # False: the manifests pass through unchanged
    max_ber: float = 0.3  # aligned codes within a 0.5 s window differing in fewer bits match
    min_overlap: float = 0.5  # share of each of two segments that must match to link them
    min_votes: int = 2  # keys shared at one offset before a pair is compared at all
    window: int = 8  # codes (64 ms each) over which the bit error rate is averaged
    fanout: int = 8  # a key shared by many segments links each to the earliest this many
    keys_per_pass: int = 50_000_000  # keys sorted in memory at once (~30 bytes each)

    def __post_init__(self) -> None:
        if not 0 < self.max_ber < 0.5:
            raise SpeechfmError("dedup max_ber must be in (0, 0.5): unrelated audio has ~0.5")
        if not 0 < self.min_overlap <= 1:
            raise SpeechfmError("dedup min_overlap must be in (0, 1]")
        if self.min_votes < 1 or self.window < 1 or self.fanout < 1 or self.keys_per_pass < 1:
            raise SpeechfmError("dedup min_votes, window, fanout and keys_per_pass must be >= 1")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
