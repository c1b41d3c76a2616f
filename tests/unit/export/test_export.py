"""`speechfm export`: fairseq wav2vec2 checkpoints and their transformers exports compute the same
hidden states and CTC logits (real fairseq models built from their dataclass configs)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from tests.helpers import run_speechfm
from tests.helpers.fairseq_checkpoints import TINY, _pretrained, _save

# Large-style: layer-norm extractor, pre-norm encoder, a projection (conv width != encoder width)
TINY_LN = TINY | {"extractor_mode": "layer_norm", "layer_norm_first": True, "encoder_embed_dim": 48,
                      "conv_bias": True, "encoder_attention_heads": 4}
# the dataclass defaults are the Base architecture (~95M parameters); the recipe quantizes targets
BASE = {"quantize_targets": True, "final_dim": 256}
LETTERS = ["|", "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p", "q", "r", "s", "t", "u", "v", "w", "x", "y", "z", "å", "ä", "ö"]


def _audio(seconds: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randn(2, int(16000 * seconds), generator=g) * 0.1


def _ctc(arch: dict, tmp: Path):
    from fairseq.data import Dictionary
    from fairseq.models.wav2vec.wav2vec2_asr import Wav2Vec2CtcConfig, Wav2VecCtc, Wav2VecEncoder

    (tmp / "dict.ltr.txt").write_text("".join(f"{c} 1\n" for c in LETTERS))
    dictionary = Dictionary.load(str(tmp / "dict.ltr.txt"))
    _, pre_cfg = _pretrained(arch)
    normalize = arch.get("layer_norm_first", False)
    cfg = Wav2Vec2CtcConfig(w2v_args=pre_cfg, normalize=normalize, data=str(tmp))
    torch.manual_seed(0)
    model = Wav2VecCtc(cfg, Wav2VecEncoder(cfg, output_size=len(dictionary))).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    ckpt_cfg = OmegaConf.create({
        "model": OmegaConf.to_container(OmegaConf.structured(cfg), enum_to_str=True)
        | {"_name": "wav2vec_ctc"},
        "task": {"_name": "audio_finetuning", "data": str(tmp), "labels": "ltr",
                 "normalize": normalize}})
    return model, ckpt_cfg, dictionary


@pytest.mark.parametrize("arch", [TINY, TINY_LN, BASE], ids=["tiny", "tiny-layernorm", "base"])
def test_pretrained_hidden_states_match(arch: dict, tmp_path: Path) -> None:
    from transformers import Wav2Vec2ForPreTraining, Wav2Vec2Model

    from speechfm.export import export_checkpoint

    fs_model, cfg = _pretrained(arch)
    ckpt = _save(tmp_path / "checkpoint_best.pt", cfg, fs_model)
    out = export_checkpoint(ckpt, tmp_path / "hf")
    hf = Wav2Vec2Model.from_pretrained(str(out)).eval()
    assert Wav2Vec2ForPreTraining.from_pretrained(str(out)).quantizer.codevectors.shape[1] == (
        arch.get("latent_vars", 320) * arch.get("latent_groups", 2))
    audio = _audio()
    with torch.no_grad():
        fs = fs_model.extract_features(audio, padding_mask=None, mask=False)
        ours = hf(audio, output_hidden_states=True)
    assert torch.allclose(fs["x"], ours.last_hidden_state, atol=1e-4), \
        (fs["x"] - ours.last_hidden_state).abs().max()
    assert torch.allclose(fs_model.layer_norm(fs_model.feature_extractor(audio).transpose(1, 2)),
                          ours.extract_features, atol=1e-4)
    # every encoder layer's output (fairseq layer_results are T x B x C before any final norm)
    for i, (layer_out, _, _) in enumerate(fs["layer_results"][:-1]):
        assert torch.allclose(layer_out.transpose(0, 1), ours.hidden_states[i + 1], atol=1e-4), i


@pytest.mark.parametrize("arch", [TINY, TINY_LN, BASE], ids=["tiny", "tiny-layernorm", "base"])
def test_ctc_logits_match_and_load_with_plain_transformers(arch: dict, tmp_path: Path) -> None:
    from transformers import Wav2Vec2ForCTC, Wav2Vec2Processor

    from speechfm.export import export_checkpoint

    fs_model, cfg, dictionary = _ctc(arch, tmp_path)
    ckpt = _save(tmp_path / "checkpoint_best.pt", cfg, fs_model,
                 task_state={"target_dictionary": dictionary})
    out = export_checkpoint(ckpt, tmp_path / "hf")
    model = Wav2Vec2ForCTC.from_pretrained(str(out)).eval()
    processor = Wav2Vec2Processor.from_pretrained(str(out))
    audio = _audio()
    with torch.no_grad():
        fs_logits = fs_model(source=audio, padding_mask=None)["encoder_out"].transpose(0, 1)
        logits = model(audio).logits
    assert logits.shape == fs_logits.shape
    assert torch.allclose(fs_logits, logits, atol=1e-4), (fs_logits - logits).abs().max()
    # same symbols in the same order; fairseq's blank <s> is the tokenizer's pad
    vocab = processor.tokenizer.get_vocab()
    assert vocab["<pad>"] == dictionary.bos() == model.config.pad_token_id == 0
    assert all(vocab[c] == dictionary.index(c) for c in LETTERS)
    ids = [dictionary.index(c) for c in ["h", "ä", "n", "|", "s", "a", "a", "p", "u", "u", "|"]]
    assert processor.decode(ids, group_tokens=False) == "hän saapuu"
    assert processor.feature_extractor.do_normalize == arch.get("layer_norm_first", False)


def test_export_cli_and_errors(tmp_path: Path) -> None:
    fs_model, cfg = _pretrained(TINY)
    ckpt = _save(tmp_path / "ckpt.pt", cfg, fs_model)
    done = run_speechfm("export", ckpt, "--out", tmp_path / "hf")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "hf" / "config.json").exists()
    assert (tmp_path / "hf" / "preprocessor_config.json").exists()
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    bad = run_speechfm("export", tmp_path / "junk.pt", "--out", tmp_path / "x")
    assert bad.returncode == 2 and "junk.pt" in bad.stderr and len(bad.stderr.splitlines()) == 1
