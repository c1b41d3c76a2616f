"""What a demo archive repeats, as broadcasts do: adverts that air at several times and on several
channels, each channel's ident (a jingle under a spoken slogan) at the top of every hour, and for
near-misses that are not repeats, each channel's host (one voice reading different sentences) and
music bed (the same bed under different speech).

Every item is a recipe drawn once from the archive seed and rendered anew at each channel's rate,
so an advert on an MP2 48 kHz channel and on an AAC 44.1 kHz channel is the same sound through a
different chain. Each placement is written to the ground truth as an occurrence
`{"id", "start", "end", "item_start"}`: the file's audio from `start` to `end` is the item's audio
from `item_start` on (at another gain).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from speechfm.synth import sounds

if TYPE_CHECKING:
    from speechfm.synth.archive import Channel, _Mix

ADVERTS = 4  # distinct adverts in an archive
PAUSE = 0.25  # seconds between the sentences of an advert (a voice-over runs on)
BED_SECONDS = 40.0  # length of a channel's music bed; a block uses its first seconds


@dataclass(frozen=True)
class Item:
    """A repeated piece: sentences by one voice over a music bed (advert) or a jingle (ident)."""

    id: str
    voice: sounds.Voice
    texts: tuple[str, ...]
    under: str  # "music" or "jingle"
    under_seed: int
    under_db: float  # level of the bed or jingle relative to the voice

    @property
    def kind(self) -> str:
        return "music" if self.under == "music" else "jingle"


@lru_cache(maxsize=64)
def _render(item: Item, rate: int) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """(the item's sentences, its bed or jingle) at `rate`; the same for every placement."""
    speech = tuple(sounds.speak(text, item.voice, rate) for text in item.texts)
    seconds = sum(len(s) for s in speech) / rate + PAUSE * (len(speech) - 1)
    rng = np.random.default_rng(item.under_seed)
    under = (sounds.music(rng, seconds, rate) if item.under == "music"
             else sounds.jingle(rng, seconds, rate))
    return speech, under


@lru_cache(maxsize=16)
def _bed(seed: int, rate: int) -> np.ndarray:
    return sounds.music(np.random.default_rng(seed), BED_SECONDS, rate)


@dataclass(frozen=True)
class Library:
    """The repeated items and reused voices and beds of one archive (drawn from its seed)."""

    channels: tuple[str, ...]
    adverts: tuple[Item, ...]
    idents: tuple[Item, ...]  # one per channel
    hosts: tuple[sounds.Voice, ...]  # one per channel
    beds: tuple[int, ...]  # one music seed per channel

    @classmethod
    def build(cls, seed: int, channels: list[Channel], sentences: list[str]) -> Library:
        rng = np.random.default_rng([seed, 18])

        def item(name: str, texts: int, under: str, level: tuple[float, float]) -> Item:
            chosen = tuple(str(t) for t in rng.choice(sentences, size=texts, replace=False))
            return Item(name, sounds.Voice.sample(rng), chosen, under,
                        int(rng.integers(2**31)), float(rng.uniform(*level)))

        adverts = tuple(item(f"advert-{i}", int(rng.integers(1, 4)), "music", (-16, -12))
                        for i in range(ADVERTS))
        idents = tuple(item(f"ident-{c.name}", 1, "jingle", (-10, -6)) for c in channels)
        hosts = tuple(sounds.Voice.sample(rng) for _ in channels)
        beds = tuple(int(rng.integers(2**31)) for _ in channels)
        return cls(tuple(c.name for c in channels), adverts, idents, hosts, beds)

    def channel_index(self, name: str) -> int:
        return self.channels.index(name)

    @staticmethod
    def bed(seed: int, seconds: float, rate: int) -> np.ndarray:
        """The first `seconds` of a channel's bed (always from its start: the same sound)."""
        return _bed(seed, rate)[: int(seconds * rate)]

    @staticmethod
    def place(mix: _Mix, item: Item, gain_db: float, at: int) -> int:
        """Mix `item` into `mix` at sample `at` with `gain_db`; note the occurrence. Returns the
        sample after it."""
        speech, under = _render(item, mix.rate)
        pos = at
        for i, (text, audio) in enumerate(zip(item.texts, speech)):
            if i:
                pos = min(mix.total, pos + int(PAUSE * mix.rate))
            pos = mix.add("speech", audio, gain_db, pos, text=text, voice=item.voice.name,
                          background=item.kind)
        end = mix.add(item.kind, under, gain_db + item.under_db, at, bed=True)
        end = max(pos, end)
        mix.mark(mix.repeats, at, end, id=item.id, item_start=0.0)
        return end
