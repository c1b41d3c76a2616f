"""Batched CTC inference (`speechfm.core.ctc.ctc_logits`, used by `evaluate` and `serve`) gives
each clip the logits it gets alone, for group-norm (Base-like) and layer-norm (Large-like) models."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from speechfm.core.ctc import ctc_logits


def small_model(feat_extract_norm: str, stable: bool):
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2ForCTC

    torch.manual_seed(0)
    config = Wav2Vec2Config(
        vocab_size=12, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, conv_dim=(32,) * 7, num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4, pad_token_id=0, feat_extract_norm=feat_extract_norm,
        do_stable_layer_norm=stable)
    extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0,
                                         do_normalize=True, return_attention_mask=True)
    return Wav2Vec2ForCTC(config).eval(), extractor


@pytest.mark.parametrize("norm,stable", [("group", False), ("layer", True)])
def test_batched_logits_equal_each_clip_alone(norm: str, stable: bool) -> None:
    model, extractor = small_model(norm, stable)
    rng = np.random.default_rng(0)
    clips = [(0.3 * rng.standard_normal(n) * np.sin(np.arange(n) / 700)).astype(np.float32)
             for n in (16000, 9000, 23456)]
    batched = ctc_logits(model, extractor, clips)
    with torch.inference_mode():
        alone = [model(extractor(c, sampling_rate=16000, return_tensors="pt").input_values)
                 .logits[0] for c in clips]
        inputs = extractor(clips, sampling_rate=16000, return_tensors="pt", padding=True)
        padded = model(inputs.input_values, attention_mask=inputs.attention_mask).logits
    for got, want in zip(batched, alone):
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    if norm == "group":  # the plain padded batch: group norm sees the padding, short clips change
        short = alone[1].shape[0]
        assert not torch.allclose(padded[1, :short], alone[1], rtol=1e-4, atol=1e-4)



def _tokenizer(tmp_path):
    import json

    from transformers import Wav2Vec2CTCTokenizer

    from tests.helpers import FINNISH_VOCAB

    (tmp_path / "vocab.json").write_text(json.dumps({c: i for i, c in enumerate(FINNISH_VOCAB)}))
    return Wav2Vec2CTCTokenizer(str(tmp_path / "vocab.json"), unk_token="<unk>", pad_token="<pad>",
                                word_delimiter_token="|", bos_token=None, eos_token=None)


def test_greedy_words_span_their_letters_frames(tmp_path) -> None:
    from speechfm.core.ctc import Word, greedy_words

    tokenizer = _tokenizer(tmp_path)
    frames = "__hh_e_ll_l_oo__|__|_mm_a__a_|-"  # letter per frame, _ blank, | delimiter, - padding
    ids = [-100 if c == "-" else tokenizer.convert_tokens_to_ids("<pad>" if c == "_" else c)
           for c in frames]
    assert greedy_words(tokenizer, ids) == [Word("hello", 2, 14), Word("maa", 21, 28)]
    assert greedy_words(tokenizer, []) == []
    assert greedy_words(tokenizer, ids[:2]) == []


def test_greedy_words_agree_with_the_greedy_text(tmp_path) -> None:
    """On random frame paths (runs, blanks, delimiters, unknowns), the words' texts are the
    tokenizer's decoding and their frames increase and hold each letter."""
    from speechfm.core.ctc import greedy_text, greedy_words

    tokenizer = _tokenizer(tmp_path)
    rng = np.random.default_rng(0)
    vocab = len(tokenizer)
    for _ in range(300):
        p = rng.dirichlet(np.full(vocab, 0.3))
        p[0] += rng.uniform(0, 3)
        p[2] += rng.uniform(0, 1)
        ids = rng.choice(vocab, size=int(rng.integers(0, 60)), p=p / p.sum())
        words = greedy_words(tokenizer, ids)
        assert " ".join(w.text for w in words) == " ".join(greedy_text(tokenizer, ids).split())
        for a, b in itertools.pairwise(words):
            assert a.start < a.end <= b.start
        for w in words:
            assert ids[w.start] not in (0, 2) and ids[w.end - 1] not in (0, 2)


def test_group_words_and_frame_seconds() -> None:
    from transformers import Wav2Vec2Config

    from speechfm.core.ctc import Word, frame_seconds, group_words

    assert frame_seconds(Wav2Vec2Config()) == pytest.approx(0.02)
    words = [Word("a", 0, 5), Word("b", 8, 12), Word("c", 40, 45), Word("d", 46, 90)]
    assert group_words(words, pause=10, longest=100) == [words[:2], words[2:]]
    assert group_words(words, pause=10, longest=40) == [words[:2], [words[2]], [words[3]]]
    assert group_words([], pause=10, longest=40) == []
