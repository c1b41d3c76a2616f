"""Word n-gram language models built from text, and CTC beam search with them.

`build_arpa` writes a back-off n-gram model in the ARPA format (the one KenLM reads) with
interpolated absolute discounting: every order keeps `count - D` of each seen n-gram and gives the
rest to the next lower order; the unigrams share theirs with a uniform distribution over the
vocabulary and `<unk>`. Back-off weights are computed so that every context's distribution sums to
one. Beam search with such a model is
`speechfm.core.ctc.BeamDecoder` (pyctcdecode through KenLM).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path

from speechfm.core.errors import SpeechfmError

BOS, EOS, UNK = "<s>", "</s>", "<unk>"


def ngram_counts(sentences: Iterable[str], order: int) -> list[Counter]:
    """counts[k][(w1..wk+1)] of every n-gram up to `order`, sentences padded with <s> ... </s>."""
    counts: list[Counter] = [Counter() for _ in range(order)]
    for sentence in sentences:
        words = [BOS, *sentence.split(), EOS]
        for n in range(1, order + 1):
            for i in range(len(words) - n + 1):
                gram = tuple(words[i:i + n])
                if gram != (BOS,):  # <s> is never predicted
                    counts[n - 1][gram] += 1
    return counts


def build_arpa(sentences: Iterable[str], order: int = 3, discount: float = 0.7) -> str:
    """An ARPA back-off model of `sentences` (already normalised, words split by spaces)."""
    if order < 1 or not 0.0 < discount < 1.0:
        raise SpeechfmError(f"bad n-gram settings: order {order}, discount {discount}",
                            hint="order >= 1 and 0 < discount < 1")
    counts = ngram_counts(sentences, order)
    if not counts[0]:
        raise SpeechfmError("no text to build a language model from")
    prob: list[dict[tuple[str, ...], float]] = [{} for _ in range(order)]

    # unigrams: discounted counts plus a uniform share over the vocabulary and <unk>
    total = sum(counts[0].values())
    vocab = sorted(g[0] for g in counts[0]) + [UNK]
    left = discount * len(counts[0]) / total
    for (w,), c in counts[0].items():
        prob[0][(w,)] = (c - discount) / total + left / len(vocab)
    prob[0][(UNK,)] = left / len(vocab)

    for n in range(2, order + 1):
        context_total: Counter = Counter()
        context_types: Counter = Counter()
        for gram, c in counts[n - 1].items():
            context_total[gram[:-1]] += c
            context_types[gram[:-1]] += 1
        for gram, c in counts[n - 1].items():
            h = gram[:-1]
            lower = _seen(prob, gram[1:])
            prob[n - 1][gram] = ((c - discount) / context_total[h]
                                 + discount * context_types[h] / context_total[h] * lower)

    # back-off weight of each context h: the mass its seen words leave, over what the lower order
    # gives those same words
    followers: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for n in range(2, order + 1):
        for gram in prob[n - 1]:
            followers[gram[:-1]].append(gram[-1])
    backoff: dict[tuple[str, ...], float] = {}
    for h, words in followers.items():
        seen = sum(prob[len(h)][(*h, w)] for w in words)
        lower = sum(_seen(prob, (*h[1:], w)) for w in words)
        backoff[h] = max(1.0 - seen, 1e-12) / max(1.0 - lower, 1e-12)

    lines = ["", "\\data\\"]
    sizes = [len(prob[0]) + 1] + [len(p) for p in prob[1:]]  # + <s> among the unigrams
    lines += [f"ngram {n}={size}" for n, size in enumerate(sizes, 1)]
    for n in range(1, order + 1):
        lines += ["", f"\\{n}-grams:"]
        entries = sorted(prob[n - 1].items())
        if n == 1:
            entries = [((BOS,), None), *entries]
        for gram, p in entries:
            logp = -99.0 if p is None else math.log10(p)
            row = f"{logp:.6f}\t{' '.join(gram)}"
            if n < order and gram in backoff:
                row += f"\t{math.log10(backoff[gram]):.6f}"
            elif n < order and gram == (BOS,):
                row += "\t0.000000"
            lines.append(row)
    lines += ["", "\\end\\", ""]
    return "\n".join(lines)


def _seen(prob: list[dict], gram: tuple[str, ...]) -> float:
    """p(gram[-1] | gram[:-1]) of a gram that occurs in the text. Every suffix of a counted n-gram
    is itself counted (it occurs one word later), so the lower orders the model needs are always
    in `prob`."""
    return prob[len(gram) - 1][gram]


def write_lm(sentences: list[str], out: Path, order: int = 3, discount: float = 0.7) -> Path:
    """Write the ARPA model of `sentences` to `out` (atomically); returns `out`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    tmp.write_text(build_arpa(sentences, order, discount), encoding="utf-8")
    tmp.replace(out)
    return out
