"""The ARPA n-gram builder of `speechfm lm` and beam search with its model as `speechfm evaluate
--lm` decodes (pyctcdecode + KenLM, both real)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from speechfm.evaluate.lm import BOS, EOS, UNK, build_arpa, write_lm
from tests.helpers import FINNISH_VOCAB

CORPUS = ["talo on iso", "talo on punainen", "iso talo on tuolla", "kissa on talossa",
          "punainen kissa", "tuolla on kissa", "talo ja kissa"]


def test_arpa_is_a_normalised_backoff_model_that_kenlm_reads(tmp_path: Path) -> None:
    import kenlm
    arpa = write_lm(CORPUS, tmp_path / "lm.arpa", order=3)
    model = kenlm.Model(str(arpa))
    assert model.order == 3
    vocab = sorted({w for s in CORPUS for w in s.split()}) + [EOS]
    # every context's distribution over the vocabulary (+ <unk>) sums to one, seen or not
    for context in ([BOS], [BOS, "talo"], ["talo", "on"], ["on", "kissa"], ["ja", "iso"]):
        state = kenlm.State()
        if context[0] == BOS:
            model.BeginSentenceWrite(state)
            context = context[1:]
        else:
            model.NullContextWrite(state)
        for word in context:
            nxt = kenlm.State()
            model.BaseScore(state, word, nxt)
            state = nxt
        total = sum(10 ** model.BaseScore(state, w, kenlm.State()) for w in [*vocab, UNK])
        assert total == pytest.approx(1.0, abs=1e-4), context
    # what the text says is more likely than a shuffle of it
    assert model.score("talo on iso") > model.score("iso on talo") + 1.0
    assert build_arpa(CORPUS, order=2).count("\\2-grams:") == 1


def _emissions(text: str, confusions: dict[int, tuple[str, float]]) -> np.ndarray:
    """CTC log-probabilities spelling `text` (letter, blank per letter); at the letter indices
    in `confusions` a rival letter gets the given probability (the right one the rest)."""
    index = {c: i for i, c in enumerate(FINNISH_VOCAB)}
    rows = []
    for k, ch in enumerate(text):
        p = np.full(len(FINNISH_VOCAB), 1e-4)
        target = index["|" if ch == " " else ch]
        if k in confusions:
            rival, share = confusions[k]
            p[index[rival]], p[target] = share, 1.0 - share
        else:
            p[target] = 1.0
        blank = np.full(len(FINNISH_VOCAB), 1e-4)
        blank[0] = 1.0
        rows += [p / p.sum(), blank / blank.sum()]
    return np.log(np.array(rows, dtype=np.float32))


def test_beam_search_with_the_lm_fixes_what_greedy_gets_wrong(tiny_ctc_model_dir: Path,
                                                              tmp_path: Path) -> None:
    from transformers import Wav2Vec2Processor

    from speechfm.core.ctc import BeamDecoder

    processor = Wav2Vec2Processor.from_pretrained(str(tiny_ctc_model_dir))
    arpa = write_lm(CORPUS, tmp_path / "lm.arpa")
    # the acoustics prefer "tako on iso" (k 0.6 over l 0.4): greedy says so, the LM knows "talo"
    log_probs = _emissions("talo on iso", {2: ("k", 0.6)})
    greedy = processor.batch_decode(np.argmax(log_probs, -1)[None])[0]
    assert greedy == "tako on iso"
    assert BeamDecoder(processor, arpa, alpha=0.5, beta=1.0)(log_probs) == "talo on iso"
    # a clear acoustic signal is not overruled: an unseen word stays what was said
    assert BeamDecoder(processor, arpa)(_emissions("sika on iso", {})) == "sika on iso"


def test_beam_words_carry_the_frames_of_their_letters(tiny_ctc_model_dir: Path,
                                                      tmp_path: Path) -> None:
    """Word timestamps with the LM: each word spans its first letter's frame to the frame after
    its last letter (`_emissions` gives every character two frames: letter, blank)."""
    from transformers import Wav2Vec2Processor

    from speechfm.core.ctc import BeamDecoder, Word

    processor = Wav2Vec2Processor.from_pretrained(str(tiny_ctc_model_dir))
    beam = BeamDecoder(processor, write_lm(CORPUS, tmp_path / "lm.arpa"))
    log_probs = _emissions("talo on iso", {2: ("k", 0.6)})
    assert beam.words(log_probs) == [Word("talo", 0, 7), Word("on", 10, 13), Word("iso", 16, 21)]
