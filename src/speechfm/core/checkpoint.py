"""fairseq wav2vec 2.0 checkpoint -> transformers model folder (`save_pretrained`).

The converter that used to ship with transformers is gone, so the key mapping lives here. A
pre-trained checkpoint (`Wav2Vec2Model`) becomes `Wav2Vec2ForPreTraining` (quantizer and
projections kept, so training can continue); a fine-tuned one (`Wav2VecCtc`) becomes
`Wav2Vec2ForCTC` with its processor (vocabulary from the checkpoint's target dictionary).
Both feature-extractor modes (group norm: Base; layer norm: Large/X-Large) and
`layer_norm_first` are handled; the positional convolution's weight norm is written as the
parametrization transformers now uses.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from speechfm.core.errors import SpeechfmError

log = logging.getLogger(__name__)

CTC_PREFIX = "w2v_encoder.w2v_model."
FAIRSEQ_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")
"""fairseq Dictionary's first four symbols; the CTC blank is `<s>` (index 0)."""


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a fairseq checkpoint (trusted: it holds pickled config and dictionary objects)."""
    import torch

    if not path.is_file():
        raise SpeechfmError("checkpoint not found", path=path)
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=False)
    except Exception as exc:
        raise SpeechfmError(f"cannot read fairseq checkpoint: {exc}", path=path) from exc
    if not isinstance(state, dict) or "model" not in state:
        raise SpeechfmError("not a fairseq checkpoint (no 'model' weights)", path=path)
    if state.get("cfg") is None:
        raise SpeechfmError("checkpoint has no 'cfg' (fairseq < 0.10 args are not supported)",
                            path=path)
    return state


def _plain(cfg: Any) -> dict[str, Any]:
    from omegaconf import DictConfig, OmegaConf

    if isinstance(cfg, DictConfig):
        try:
            return OmegaConf.to_container(cfg, resolve=True)
        except Exception:  # noqa: BLE001 - e.g. ${oc.env:RANK} of a multi-process run
            return OmegaConf.to_container(cfg, resolve=False)
    return dict(cfg)


def hf_config(model_cfg: dict[str, Any], **extra: Any):  # -> Wav2Vec2Config
    """transformers `Wav2Vec2Config` equivalent to a fairseq `Wav2Vec2Config` (as a dict)."""
    from transformers import Wav2Vec2Config

    # fairseq stores the conv stack as a Python expression, e.g. "[(512, 10, 5)] + [(512, 3, 2)] * 4"
    layers = eval(model_cfg["conv_feature_layers"], {"__builtins__": {}})
    if not model_cfg.get("quantize_targets", False) or model_cfg.get("quantize_input", False):
        raise SpeechfmError("only quantize_targets=true, quantize_input=false models (the wav2vec "
                            "2.0 recipe) have a transformers equivalent")
    if model_cfg.get("pos_conv_depth", 1) != 1:
        raise SpeechfmError("pos_conv_depth > 1 (data2vec-style positional conv) is not supported")
    final_dim = model_cfg.get("final_dim", 0) or model_cfg["encoder_embed_dim"]
    latent_dim = model_cfg.get("latent_dim", 0) or final_dim
    mode = model_cfg.get("extractor_mode", "default")
    return Wav2Vec2Config(
        vocab_size=extra.pop("vocab_size", 32),
        hidden_size=model_cfg["encoder_embed_dim"],
        num_hidden_layers=model_cfg["encoder_layers"],
        num_attention_heads=model_cfg["encoder_attention_heads"],
        intermediate_size=model_cfg["encoder_ffn_embed_dim"],
        hidden_act=model_cfg.get("activation_fn", "gelu"),
        feat_extract_norm="layer" if mode == "layer_norm" else "group",
        feat_extract_activation="gelu",
        conv_dim=[c for c, _, _ in layers], conv_kernel=[k for _, k, _ in layers],
        conv_stride=[s for _, _, s in layers], conv_bias=bool(model_cfg.get("conv_bias", False)),
        num_conv_pos_embeddings=model_cfg.get("conv_pos", 128),
        num_conv_pos_embedding_groups=model_cfg.get("conv_pos_groups", 16),
        do_stable_layer_norm=bool(model_cfg.get("layer_norm_first", False)),
        num_codevectors_per_group=model_cfg.get("latent_vars", 320),
        num_codevector_groups=model_cfg.get("latent_groups", 2),
        codevector_dim=latent_dim, proj_codevector_dim=final_dim,
        hidden_dropout=model_cfg.get("dropout", 0.1),
        attention_dropout=model_cfg.get("attention_dropout", 0.1),
        activation_dropout=model_cfg.get("activation_dropout", 0.0),
        feat_proj_dropout=model_cfg.get("dropout_input", 0.0),
        feat_quantizer_dropout=model_cfg.get("dropout_features", 0.0),
        layerdrop=model_cfg.get("encoder_layerdrop", 0.0),
        mask_time_prob=model_cfg.get("mask_prob", 0.65),
        mask_time_length=model_cfg.get("mask_length", 10),
        mask_feature_prob=model_cfg.get("mask_channel_prob", 0.0),
        mask_feature_length=model_cfg.get("mask_channel_length", 10),
        num_negatives=model_cfg.get("num_negatives", 100),
        **extra,
    )


def map_encoder_keys(weights: dict[str, Any], config, prefix: str = "",
                     target: str = "wav2vec2.") -> dict[str, Any]:
    """fairseq `Wav2Vec2Model` weights (under `prefix`) -> transformers names (under `target`)."""
    import torch

    out: dict[str, Any] = {}
    w = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}
    layer_norm_convs = config.feat_extract_norm == "layer"
    for i in range(len(config.conv_dim)):
        src, dst = f"feature_extractor.conv_layers.{i}.", f"{target}feature_extractor.conv_layers.{i}."
        out[dst + "conv.weight"] = w.pop(src + "0.weight")
        if config.conv_bias:
            out[dst + "conv.bias"] = w.pop(src + "0.bias")
        norm = src + ("2.1." if layer_norm_convs else "2.")
        if layer_norm_convs or i == 0:
            out[dst + "layer_norm.weight"] = w.pop(norm + "weight")
            out[dst + "layer_norm.bias"] = w.pop(norm + "bias")
    out[f"{target}feature_projection.layer_norm.weight"] = w.pop("layer_norm.weight")
    out[f"{target}feature_projection.layer_norm.bias"] = w.pop("layer_norm.bias")
    if "post_extract_proj.weight" in w:
        out[f"{target}feature_projection.projection.weight"] = w.pop("post_extract_proj.weight")
        out[f"{target}feature_projection.projection.bias"] = w.pop("post_extract_proj.bias")
    else:  # fairseq has no projection when the conv width equals the encoder width
        out[f"{target}feature_projection.projection.weight"] = torch.eye(config.hidden_size)
        out[f"{target}feature_projection.projection.bias"] = torch.zeros(config.hidden_size)
    if "mask_emb" in w:
        out[f"{target}masked_spec_embed"] = w.pop("mask_emb")
    pos = f"{target}encoder.pos_conv_embed.conv."
    if "encoder.pos_conv.0.weight_g" in w:
        out[pos + "parametrizations.weight.original0"] = w.pop("encoder.pos_conv.0.weight_g")
        out[pos + "parametrizations.weight.original1"] = w.pop("encoder.pos_conv.0.weight_v")
    else:  # newer torch saves fairseq's weight norm as a parametrization already
        out[pos + "parametrizations.weight.original0"] = w.pop(
            "encoder.pos_conv.0.parametrizations.weight.original0")
        out[pos + "parametrizations.weight.original1"] = w.pop(
            "encoder.pos_conv.0.parametrizations.weight.original1")
    out[pos + "bias"] = w.pop("encoder.pos_conv.0.bias")
    out[f"{target}encoder.layer_norm.weight"] = w.pop("encoder.layer_norm.weight")
    out[f"{target}encoder.layer_norm.bias"] = w.pop("encoder.layer_norm.bias")
    names = {"self_attn.q_proj": "attention.q_proj", "self_attn.k_proj": "attention.k_proj",
             "self_attn.v_proj": "attention.v_proj", "self_attn.out_proj": "attention.out_proj",
             "self_attn_layer_norm": "layer_norm", "fc1": "feed_forward.intermediate_dense",
             "fc2": "feed_forward.output_dense", "final_layer_norm": "final_layer_norm"}
    for i in range(config.num_hidden_layers):
        for src, dst in names.items():
            for p in ("weight", "bias"):
                out[f"{target}encoder.layers.{i}.{dst}.{p}"] = w.pop(
                    f"encoder.layers.{i}.{src}.{p}")
    pretraining = {"quantizer.vars": "quantizer.codevectors",
                   "quantizer.weight_proj.weight": "quantizer.weight_proj.weight",
                   "quantizer.weight_proj.bias": "quantizer.weight_proj.bias",
                   "project_q.weight": "project_q.weight", "project_q.bias": "project_q.bias",
                   "final_proj.weight": "project_hid.weight", "final_proj.bias": "project_hid.bias"}
    for src, dst in pretraining.items():
        if src in w:
            out[dst] = w.pop(src)
    if w:
        raise SpeechfmError(f"unmapped fairseq weights: {sorted(w)[:8]}",
                            hint="this checkpoint's architecture is not supported by the export")
    return out


def export_checkpoint(checkpoint: Path, out: Path, dictionary: Path | None = None) -> Path:
    """Convert `checkpoint` into a transformers folder at `out`; returns `out`."""
    import torch
    from transformers import Wav2Vec2ForCTC, Wav2Vec2ForPreTraining

    state = load_checkpoint(checkpoint)
    cfg = _plain(state["cfg"])
    model_cfg, task_cfg = cfg["model"], cfg.get("task") or {}
    weights = state["model"]
    fine_tuned = any(k.startswith(CTC_PREFIX) for k in weights)
    out.mkdir(parents=True, exist_ok=True)
    if fine_tuned:
        w2v = model_cfg.get("w2v_args")
        if not w2v:
            raise SpeechfmError("fine-tuned checkpoint has no w2v_args", path=checkpoint)
        w2v = _plain(w2v)
        symbols = _dictionary_symbols(state, task_cfg, dictionary, checkpoint)
        vocab = ["<pad>", "<s>", *symbols[2:]]  # blank (fairseq <s>, id 0) is transformers' pad
        config = hf_config(w2v["model"], vocab_size=len(vocab), pad_token_id=0,
                           ctc_loss_reduction="mean", ctc_zero_infinity=True,
                           final_dropout=model_cfg.get("final_dropout", 0.0))
        mapped = map_encoder_keys(weights, config, prefix=CTC_PREFIX)
        mapped["lm_head.weight"] = weights["w2v_encoder.proj.weight"]
        mapped["lm_head.bias"] = weights["w2v_encoder.proj.bias"]
        model = Wav2Vec2ForCTC(config)
        _load(model, mapped, checkpoint)
        normalize = bool((w2v.get("task") or {}).get("normalize", task_cfg.get("normalize", False)))
        _save_processor(out, vocab, normalize)
    else:
        config = hf_config(model_cfg)
        mapped = map_encoder_keys(weights, config)
        model = Wav2Vec2ForPreTraining(config)
        _load(model, mapped, checkpoint, allow_missing=("quantizer.", "project_"))
        normalize = bool(task_cfg.get("normalize", False))
        _save_feature_extractor(out, normalize)
    with torch.no_grad():
        model.save_pretrained(str(out))
    (out / "speechfm_export.json").write_text(json.dumps({
        "source": str(checkpoint.resolve()), "kind": "ctc" if fine_tuned else "pretrained",
        "updates": (state.get("optimizer_history") or [{}])[-1].get("num_updates"),
        "normalize": normalize}, indent=1))
    log.info("exported %s checkpoint %s -> %s", "CTC" if fine_tuned else "pre-trained",
             checkpoint, out)
    return out


def _load(model, mapped: dict[str, Any], checkpoint: Path, allow_missing: tuple = ()) -> None:
    result = model.load_state_dict(mapped, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith(allow_missing)]
    if missing or result.unexpected_keys:
        raise SpeechfmError(f"weights do not fit: missing {missing[:5]}, unexpected "
                            f"{result.unexpected_keys[:5]}", path=checkpoint)


def _dictionary_symbols(state: dict, task_cfg: dict, dictionary: Path | None,
                        checkpoint: Path) -> list[str]:
    """The CTC output symbols in fairseq order (`<s> <pad> </s> <unk> | a b ...`)."""
    stored = (state.get("task_state") or {}).get("target_dictionary")
    if dictionary is None and stored is not None:
        return list(stored.symbols)
    candidates = [dictionary] if dictionary else [
        Path(task_cfg.get("data") or ".") / f"dict.{task_cfg.get('labels', 'ltr')}.txt"]
    for path in candidates:
        if path and path.is_file():
            lines = path.read_text(encoding="utf-8").splitlines()
            return [*FAIRSEQ_SPECIALS, *(line.rsplit(" ", 1)[0] for line in lines if line)]
    raise SpeechfmError("the checkpoint holds no target dictionary", path=checkpoint,
                        hint="pass --dict dict.ltr.txt")


def _save_feature_extractor(out: Path, normalize: bool) -> None:
    from transformers import Wav2Vec2FeatureExtractor

    from speechfm.core.constants import SAMPLE_RATE

    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SAMPLE_RATE, padding_value=0.0,
                             do_normalize=normalize, return_attention_mask=True
                             ).save_pretrained(str(out))


def _save_processor(out: Path, vocab: list[str], normalize: bool) -> None:
    from speechfm.core.text import make_processor

    vocab_json = out / "vocab.json"
    tmp = vocab_json.with_name("vocab.json.part")
    tmp.write_text(json.dumps({t: i for i, t in enumerate(vocab)}, ensure_ascii=False, indent=1),
                   encoding="utf-8")
    os.replace(tmp, vocab_json)
    make_processor(vocab_json, do_normalize=normalize).save_pretrained(str(out))
