"""CLI verb `speechfm lm`: a word n-gram language model (ARPA) from transcripts or plain text."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

HELP = "Build a word n-gram language model (ARPA, for beam search in 'evaluate --lm') from text."

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from speechfm.core.cliargs import add_alphabet

    p.add_argument("--text", type=Path, action="append", required=True,
                   help="a table with a text column (train.tsv/.csv: never the test split) or a "
                        "plain .txt file, one sentence per line; repeatable")
    p.add_argument("--out", type=Path, required=True, help="the .arpa file to write")
    p.add_argument("--order", type=int, default=3, help="n-gram order (default 3)")
    p.add_argument("--discount", type=float, default=0.7, help="absolute discount (0-1)")
    add_alphabet(p)


def sentences_of(path: Path) -> list[str]:
    """Raw sentences of a transcript table (its text column) or of a plain text file."""
    from speechfm.core.errors import SpeechfmError
    from speechfm.core.labeled import read_table

    if not path.is_file():
        raise SpeechfmError("text not found", path=path)
    if path.suffix in (".tsv", ".csv"):
        return [text for _, text in read_table(path)]
    return path.read_text(encoding="utf-8").splitlines()


def run(args: argparse.Namespace) -> int:
    from speechfm.core.text import FINNISH_ALPHABET, Normalizer, TextConfig
    from speechfm.evaluate.lm import write_lm

    normalize = Normalizer(TextConfig(alphabet=args.alphabet or FINNISH_ALPHABET,
                                      extra=args.keep))
    sentences = [s for path in args.text for raw in sentences_of(path) if (s := normalize(raw))]
    write_lm(sentences, args.out, args.order, args.discount)
    words = {w for s in sentences for w in s.split()}
    log.info("%d-gram model of %d sentences, %d words: %s", args.order, len(sentences),
             len(words), args.out)
    print(args.out)
    return 0
