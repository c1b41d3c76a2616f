"""Finnish transcript normalisation and the CTC letter vocabulary: the ONE place every stage
(fine-tuning, evaluation, serving, LUR) turns text into model targets and back.

As in the reference recipe: lower case, punctuation removed, å ä ö kept. Letters outside the
alphabet are folded to their base letter when that is in the alphabet (é -> e); anything else is
dropped and counted, so a data set's surprises show up in a report instead of in the WER.
"""

from __future__ import annotations

import collections
import json
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

FINNISH_ALPHABET = "abcdefghijklmnopqrstuvwxyzåäö"
WORD_DELIMITER = "|"
PAD_TOKEN = "<pad>"
UNK_TOKEN = "<unk>"
SPECIAL_TOKENS = (PAD_TOKEN, UNK_TOKEN, WORD_DELIMITER)
"""Vocabulary head: CTC blank (= padding, id 0), unknown, word delimiter; then the alphabet."""

# Characters that separate words when removed (so "linja-auto" stays two words, "3/4" too).
WORD_SEPARATORS = frozenset("-–—/_\u00a0\t\n\r")


@dataclass(frozen=True)
class TextConfig:
    """How transcripts are normalised; the defaults are the reference recipe's."""

    alphabet: str = FINNISH_ALPHABET
    lowercase: bool = True
    fold_accents: bool = True
    extra: str = ""
    """Characters kept besides the alphabet (e.g. digits "0123456789" or an apostrophe)."""

    @property
    def characters(self) -> str:
        return self.alphabet + "".join(c for c in self.extra if c not in self.alphabet)

    def vocabulary(self) -> list[str]:
        """Token list: special tokens first, then the characters (index = model output id)."""
        return [*SPECIAL_TOKENS, *self.characters]


@dataclass
class Normalizer:
    """Normalises transcripts with a `TextConfig` and counts what it had to drop."""

    config: TextConfig = field(default_factory=TextConfig)
    dropped: collections.Counter = field(default_factory=collections.Counter)
    folded: collections.Counter = field(default_factory=collections.Counter)

    def __post_init__(self) -> None:
        self._keep = frozenset(self.config.characters)

    def __call__(self, text: str) -> str:
        """Normalised text: kept characters and single spaces between words."""
        text = unicodedata.normalize("NFC", text)
        if self.config.lowercase:
            text = text.lower()
        out: list[str] = []
        for ch in text:
            if ch in self._keep:
                out.append(ch)
            elif ch.isspace() or ch in WORD_SEPARATORS:
                out.append(" ")
            elif self.config.fold_accents and (base := self._fold(ch)):
                self.folded[ch] += 1
                out.append(base)
            else:
                self.dropped[ch] += 1
        return " ".join("".join(out).split())

    def _fold(self, ch: str) -> str:
        base = "".join(c for c in unicodedata.normalize("NFD", ch) if not unicodedata.combining(c))
        return base if base and all(c in self._keep for c in base) else ""

    def report(self) -> dict:
        """Counts of dropped and folded characters, most frequent first (for the data report)."""
        return {
            "config": {"alphabet": self.config.alphabet, "lowercase": self.config.lowercase,
                       "fold_accents": self.config.fold_accents, "extra": self.config.extra},
            "dropped": dict(self.dropped.most_common()),
            "folded": dict(self.folded.most_common()),
            "dropped_total": sum(self.dropped.values()),
        }


def normalize(text: str, config: TextConfig | None = None) -> str:
    """Normalise one transcript (convenience wrapper around `Normalizer`)."""
    return Normalizer(config or TextConfig())(text)


def to_letters(text: str) -> str:
    """fairseq `.ltr` line of a normalised transcript: `h e i | m a a i l m a |`."""
    return " ".join(f"{' '.join(word)} {WORD_DELIMITER}" for word in text.split())


def write_vocab(path: Path, config: TextConfig | None = None) -> Path:
    """Write the transformers CTC tokenizer vocabulary (`vocab.json`) for `config`."""
    vocab = (config or TextConfig()).vocabulary()
    path.write_text(json.dumps({tok: i for i, tok in enumerate(vocab)}, ensure_ascii=False,
                               indent=1), encoding="utf-8")
    return path


def make_tokenizer(vocab_json: Path):  # -> Wav2Vec2CTCTokenizer (transformers imported lazily)
    """The CTC tokenizer every stage uses: no BOS/EOS (they would join the vocabulary)."""
    from transformers import Wav2Vec2CTCTokenizer

    return Wav2Vec2CTCTokenizer(str(vocab_json), unk_token=UNK_TOKEN, pad_token=PAD_TOKEN,
                                word_delimiter_token=WORD_DELIMITER, bos_token=None,
                                eos_token=None, do_lower_case=False)


def make_processor(vocab_json: Path, do_normalize: bool = True):  # -> Wav2Vec2Processor
    """Feature extractor (16 kHz; zero-mean unit-variance when the model was trained so) + CTC
    tokenizer, as saved with every CTC model."""
    from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2Processor

    from speechfm.core.constants import SAMPLE_RATE

    extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SAMPLE_RATE,
                                         padding_value=0.0, do_normalize=do_normalize,
                                         return_attention_mask=True)
    return Wav2Vec2Processor(feature_extractor=extractor,
                             tokenizer=make_tokenizer(vocab_json))
