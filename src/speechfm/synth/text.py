"""Finnish sentences for the demo: a fixed list of real sentences shipped with the package."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import numpy as np


def load_sentences() -> list[str]:
    """The bundled Finnish sentences (see the header of data/fi_sentences.txt for the source)."""
    text = resources.files("speechfm").joinpath("data/fi_sentences.txt").read_text("utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


@dataclass(frozen=True)
class SentenceSplits:
    """Disjoint sentence pools: the labeled splits, and the rest for the unlabeled archive."""

    train: list[str]
    valid: list[str]
    test: list[str]
    archive: list[str]


def split_sentences(seed: int, n_train: int, n_valid: int, n_test: int) -> SentenceSplits:
    """Shuffle the sentences with `seed` and cut them into disjoint pools.

    The archive draws from the train pool and the unused rest, never from valid or test, so a
    model pre-trained on the archive has never heard a test sentence.
    """
    sentences = load_sentences()
    if n_train + n_valid + n_test > len(sentences) - 100:
        raise ValueError(
            f"asked for {n_train + n_valid + n_test} labeled sentences; "
            f"at most {len(sentences) - 100} are available"
        )
    order = np.random.default_rng([seed, 7]).permutation(len(sentences))
    shuffled = [sentences[i] for i in order]
    test = shuffled[:n_test]
    valid = shuffled[n_test : n_test + n_valid]
    train = shuffled[n_test + n_valid : n_test + n_valid + n_train]
    archive = shuffled[n_test + n_valid :]
    return SentenceSplits(train=train, valid=valid, test=test, archive=archive)
