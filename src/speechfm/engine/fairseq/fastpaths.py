"""Exact fast paths inside fairseq's wav2vec 2.0, switched per job (`fast:` in a preset,
`--set fast.KEY=VALUE` on the command line; docs/pretrain.md).

The worker installs them in its own process before fairseq builds anything, by wrapping fairseq's
objects (never by editing installed files). Each is tested on CPU against plain fairseq
(tests/unit/engine/fairseq/test_fastpaths.py): same loss and gradients for one fixed batch, same optimizer updates,
every index batched once. Where a path draws random numbers elsewhere (loader workers, the
device's generator) the draws follow the same distribution; on CPU in one process they are the
very same draws.
"""

from __future__ import annotations

import argparse
import functools
import logging
import math
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from speechfm.core.cliargs import parse_bool
from speechfm.core.errors import SpeechfmError

log = logging.getLogger(__name__)

FAST_SECTION = "fast"
"""Preset key and override prefix (`fast.sdpa_attention=false`) of the fast-path switches."""

BUCKET_RATIO = 1.02
"""`bucket_batches`: crop lengths of one bucket lie within this ratio of each other."""

MAX_FILL_CROP = 0.05
"""`bucket_batches`: a batch takes one more item when that crops its items by at most this share."""


@dataclass(frozen=True)
class FastPaths:
    """Which fast paths a job installs (all off: plain fairseq)."""

    sdpa_attention: bool = False  # self-attention: fused QKV + scaled_dot_product_attention
    fused_adam: bool = False  # fairseq's Adam by torch's fused AdamW; flat fp32 master in bf16
    precompute_masks: bool = False  # time masks drawn in the loader workers
    sync_free: bool = False  # negatives drawn on the device, no host round trip in the logits
    bucket_batches: bool = False  # length buckets, batches fill max_tokens (other batches)
    loader_threads: int = 0  # torch threads per loader worker (0: leave torch's choice)
    compile_layers: bool = False  # torch.compile(dynamic=True) of each transformer layer

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, where: str = "fast") -> FastPaths:
        """Validated settings from a preset's `fast:` block (unknown keys or wrong types fail)."""
        data = dict(data or {})
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise SpeechfmError(f"unknown fast path(s) {', '.join(unknown)} in {where}",
                                hint=f"known: {', '.join(known)}")
        for name, value in data.items():
            wanted = int if name == "loader_threads" else bool
            if wanted is bool and isinstance(value, str):  # one boolean spelling everywhere
                with suppress(argparse.ArgumentTypeError):
                    value = parse_bool(value)
            elif wanted is int and isinstance(value, str) and value.isdigit():
                value = int(value)
            if type(value) is not wanted or (wanted is int and value < 0):
                kind = "an integer >= 0" if wanted is int else "true or false"
                raise SpeechfmError(f"{where}: {name} must be {kind}, not {value!r}")
            data[name] = value
        return cls(**data)

    def on(self) -> list[str]:
        """Names of the paths switched on."""
        return [name for name, value in asdict(self).items() if value]


def split_overrides(overrides: list[str]) -> tuple[list[str], dict[str, str]]:
    """(fairseq overrides, fast-path settings) from `section.key=value` items."""
    fairseq_items, fast = [], {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if sep and key.startswith(FAST_SECTION + "."):
            fast[key[len(FAST_SECTION) + 1:]] = value
        else:
            fairseq_items.append(item)
    return fairseq_items, fast


class Patches:
    """Attributes replaced on fairseq's classes and modules, put back by `restore()`."""

    _MISSING = object()

    def __init__(self) -> None:
        self._undo: list[tuple[Any, str, Any]] = []

    def set(self, owner: Any, name: str, value: Any) -> None:
        if isinstance(owner, type):  # the class's own attribute, not an inherited one
            old = owner.__dict__.get(name, self._MISSING)
        else:
            old = getattr(owner, name)
        self._undo.append((owner, name, old))
        setattr(owner, name, value)

    def restore(self) -> None:
        while self._undo:
            owner, name, old = self._undo.pop()
            if old is self._MISSING:
                delattr(owner, name)
            else:
                setattr(owner, name, old)


# --- attention -------------------------------------------------------------------------------

def _sdpa_eligible(attn: Any) -> bool:
    """True for the plain self-attention that wav2vec 2.0's encoder layers build."""
    projections = (attn.q_proj, attn.k_proj, attn.v_proj)
    return (attn.self_attention and attn.qkv_same_dim and not attn.use_xformers
            and attn.bias_k is None and not attn.add_zero_attn and not attn.onnx_trace
            and not attn.skip_embed_dim_check
            and all(isinstance(p, torch.nn.Linear) and p.bias is not None for p in projections))


def sdpa_self_attention(self: Any, query: torch.Tensor, key: torch.Tensor | None,
                        value: torch.Tensor | None, key_padding_mask: torch.Tensor | None = None,
                        incremental_state: Any = None, need_weights: bool = True,
                        static_kv: bool = False, attn_mask: torch.Tensor | None = None,
                        before_softmax: bool = False, need_head_weights: bool = False,
                        ) -> tuple[torch.Tensor, None]:
    """fairseq `MultiheadAttention.forward` for self-attention without weights: one QKV GEMM and
    `scaled_dot_product_attention` (flash or memory-efficient kernels); any other call goes to
    fairseq's own forward."""
    from fairseq.modules.multihead_attention import MultiheadAttention

    if (key is not query or value is not query or attn_mask is not None or need_weights
            or need_head_weights or before_softmax or static_kv or incremental_state is not None):
        return MultiheadAttention.forward(self, query, key, value, key_padding_mask,
                                          incremental_state, need_weights, static_kv, attn_mask,
                                          before_softmax, need_head_weights)
    frames, batch, width = query.shape
    weight = torch.cat([self.q_proj.weight, self.k_proj.weight, self.v_proj.weight])
    bias = torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias])
    qkv = F.linear(query, weight, bias).view(frames, batch, 3, self.num_heads, self.head_dim)
    q, k, v = qkv.permute(2, 1, 3, 0, 4).unbind(0)  # each [batch, heads, frames, head_dim]
    keep = None
    if key_padding_mask is not None:  # fairseq: True marks padding; SDPA: True attends
        keep = ~key_padding_mask.to(torch.bool).view(batch, 1, 1, frames)
    dropout = self.dropout_module
    p = dropout.p if self.training or dropout.apply_during_inference else 0.0
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=keep, dropout_p=p)
    return self.out_proj(out.permute(2, 0, 1, 3).reshape(frames, batch, width)), None


# --- negatives and logits without host round trips -------------------------------------------

def sample_negatives_on_device(self: Any, y: torch.Tensor, num: int,
                               padding_count: int | None = None,
                               ) -> tuple[torch.Tensor, torch.Tensor]:
    """`Wav2Vec2Model.sample_negatives` (same-utterance negatives) with the indices drawn on y's
    device: the same draws on CPU, no host-to-device copy on a GPU."""
    from fairseq.models.wav2vec.wav2vec2 import Wav2Vec2Model

    if self.cross_sample_negatives > 0 or self.n_negatives == 0 or not isinstance(num, int):
        return Wav2Vec2Model.sample_negatives(self, y, num, padding_count)
    batch, frames, width = y.shape
    high = frames - (padding_count or 0)
    if high <= 1:
        raise SpeechfmError(f"no negatives in {high} frame(s) of a {tuple(y.shape)} batch")
    with torch.no_grad():
        own = torch.arange(num, device=y.device).repeat_interleave(self.n_negatives)
        index = torch.randint(0, high - 1, (batch, self.n_negatives * num), device=y.device)
        index += index >= own  # skip the positive's own frame
        index += torch.arange(batch, device=y.device)[:, None] * high
    negs = y.reshape(-1, width)[index.view(-1)]
    return negs.view(batch, num, self.n_negatives, width).permute(2, 0, 1, 3), index


def compute_preds_without_sync(self: Any, x: torch.Tensor, y: torch.Tensor,
                               negatives: torch.Tensor) -> torch.Tensor:
    """`Wav2Vec2Model.compute_preds` without asking the host whether a negative equals the
    positive (`.any()`): such logits are set to -inf unconditionally."""
    neg_is_pos = (y == negatives).all(-1)
    targets = torch.cat([y.unsqueeze(0), negatives], dim=0)
    logits = torch.cosine_similarity(x.float(), targets.float(), dim=-1) / self.logit_temp
    logits = logits.type_as(x)
    logits[1:] = logits[1:].masked_fill(neg_is_pos, float("-inf"))
    return logits


def apply_to_model(model: torch.nn.Module, fast: FastPaths) -> list[str]:
    """Install the model-level paths on a built model (instance attributes only); returns what
    was installed, e.g. ['sdpa_attention x12', 'sync_free x1', 'compile_layers x12']."""
    from fairseq.models.wav2vec.wav2vec2 import TransformerSentenceEncoderLayer, Wav2Vec2Model

    layers = [m for m in model.modules() if isinstance(m, TransformerSentenceEncoderLayer)]
    done = []
    if fast.sdpa_attention:
        eligible = [layer.self_attn for layer in layers if _sdpa_eligible(layer.self_attn)]
        for attn in eligible:
            attn.forward = types.MethodType(sdpa_self_attention, attn)
        done.append(f"sdpa_attention x{len(eligible)}")
    if fast.sync_free:
        models = [m for m in model.modules() if isinstance(m, Wav2Vec2Model)
                  and not m.negatives_from_everywhere]
        for m in models:
            m.sample_negatives = types.MethodType(sample_negatives_on_device, m)
            m.compute_preds = types.MethodType(compute_preds_without_sync, m)
        done.append(f"sync_free x{len(models)}")
    if fast.compile_layers:
        for layer in layers:
            layer.compile(dynamic=True)
        done.append(f"compile_layers x{len(layers)}")
    return done


# --- optimizer -------------------------------------------------------------------------------

class FairseqAdamW(torch.optim.AdamW):
    """torch's AdamW kernel (fused; multi-tensor where fused is refused) computing fairseq's
    `adam` update. fairseq adds eps to sqrt(v) before the bias correction, torch after it, so
    each step runs with eps / sqrt(1 - beta2^t): fairseq's update, up to float rounding, whenever
    every parameter is stepped every update (always true of a flat fp32 master)."""

    supports_flat_params = True
    supports_memory_efficient_fp16 = False

    def __init__(self, params: list[torch.Tensor], lr: float, betas: tuple[float, float],
                 eps: float, weight_decay: float):
        params = list(params)
        try:
            super().__init__(params, lr=lr, betas=tuple(betas), eps=eps,
                             weight_decay=weight_decay, fused=True)
        except (RuntimeError, ValueError) as exc:
            log.info("fused AdamW refused (%s); multi-tensor AdamW instead", exc)
            super().__init__(params, lr=lr, betas=tuple(betas), eps=eps,
                             weight_decay=weight_decay, foreach=True)
        for group in self.param_groups:
            group.setdefault("fairseq_steps", 0)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        configured = [group["eps"] for group in self.param_groups]
        for group in self.param_groups:
            group["fairseq_steps"] += 1
            correction = 1.0 - group["betas"][1] ** group["fairseq_steps"]
            group["eps"] = group["eps"] / math.sqrt(correction)
        try:
            return super().step(closure)
        finally:
            for group, eps in zip(self.param_groups, configured):
                group["eps"] = eps

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        for group in self.param_groups:  # a state saved by fairseq's own Adam has no counter
            if "fairseq_steps" not in group:
                steps = [float(self.state[p]["step"]) for p in group["params"]
                         if "step" in self.state[p]]
                group["fairseq_steps"] = int(max(steps, default=0))


def _adam_init(original: Callable[..., None]) -> Callable[..., None]:
    def __init__(self: Any, cfg: Any, params: Any) -> None:
        params = list(params)
        original(self, cfg, params)
        plain = all(isinstance(p, torch.Tensor) and p.dtype == torch.float32 for p in params)
        if plain and params and not getattr(cfg, "tpu", False) and not cfg.fp16_adam_stats:
            self._optimizer = FairseqAdamW(params, **self.optimizer_config)
    return __init__


def _split_views(flat: torch.Tensor, like: list[torch.Tensor]) -> list[torch.Tensor]:
    return [v.view(p.shape) for v, p in zip(torch.split(flat, [p.numel() for p in like]), like)]


@functools.cache
def flat_master_optimizer_class() -> type:
    """fairseq's FP16Optimizer with one flat fp32 master tensor in bf16 too (fairseq keeps one
    fp32 copy per parameter there), built on the parameters' device, its copies between model and
    master weights done by multi-tensor kernels. fp16 keeps its dynamic loss scaler."""
    from fairseq import optim
    from fairseq.optim.fp16_optimizer import FP16Optimizer  # fairseq's own, never the patched name

    class FlatMasterFP16Optimizer(FP16Optimizer):
        @classmethod
        def build_optimizer(cls, cfg: Any, params: Any, **kwargs: Any) -> Any:
            params = list(params)
            devices = {p.device for p in params}
            if len(devices) != 1 or getattr(cfg.common, "fp16_no_flatten_grads", False):
                return super().build_optimizer(cfg, params, **kwargs)
            flat = torch.nn.Parameter(torch.cat([p.detach().reshape(-1).float() for p in params]))
            flat.grad = torch.zeros_like(flat)
            fp32_optimizer = optim.build_optimizer(cfg.optimizer, [flat])
            if not fp32_optimizer.supports_flat_params:
                raise SpeechfmError(f"{type(fp32_optimizer).__name__} cannot step a flat master",
                                    hint="set fast.fused_adam=false")
            return cls(cfg, params, fp32_optimizer, {params[0].device.index: flat}, **kwargs)

        def _flat(self) -> torch.Tensor:
            return next(iter(self.fp32_params.values()))

        def _sync_fp16_grads_to_fp32(self) -> None:
            if not self.has_flat_params:
                return super()._sync_fp16_grads_to_fp32()
            if self._needs_sync:
                views = _split_views(self._flat().grad.data, self.fp16_params)
                have = [(v, p.grad.data) for v, p in zip(views, self.fp16_params)
                        if p.grad is not None]
                missing = [v for v, p in zip(views, self.fp16_params) if p.grad is None]
                if have:
                    torch._foreach_copy_([v for v, _ in have], [g for _, g in have])
                if missing:
                    torch._foreach_zero_(missing)
                self._needs_sync = False

        def _sync_fp32_params_to_fp16(self) -> None:
            if not self.has_flat_params:
                return super()._sync_fp32_params_to_fp16()
            torch._foreach_copy_([p.data for p in self.fp16_params],
                                 _split_views(self._flat().data, self.fp16_params))

    return FlatMasterFP16Optimizer


# --- data: batches that fill max_tokens, masks in loader workers, worker threads -------------

def items_per_batch(length: int, max_tokens: int, max_sentences: int | None) -> int:
    """Items of `length` samples a batch takes: as many as fit, or one more when cropping them to
    max_tokens // n costs at most MAX_FILL_CROP of their length."""
    n = max(1, max_tokens // length)
    if max_tokens // (n + 1) >= (1.0 - MAX_FILL_CROP) * length:
        n += 1
    return min(n, max_sentences) if max_sentences else n


def fill_batches(lengths: np.ndarray, indices: np.ndarray, max_tokens: int,
                 max_sentences: int | None = None) -> list[np.ndarray]:
    """Batches of `indices` (`lengths[i]`: the size of `indices[i]`, capped at max_sample_size)
    that fill max_tokens.

    Longest first (ties keep the given order, i.e. fairseq's shuffle), cut into buckets of lengths
    within BUCKET_RATIO; each bucket is split into batches of `items_per_batch` of its shortest
    item, the rest joins the next bucket. A batch is cropped to min(shortest, max_tokens // n)."""
    indices = np.asarray(indices, dtype=np.int64)
    if len(indices) == 0:
        return []
    lengths = np.asarray(lengths, dtype=np.int64)
    by_length = np.argsort(-lengths, kind="stable")
    order, lengths = indices[by_length], lengths[by_length]
    bucket = np.floor(np.log(lengths[0] / np.maximum(lengths, 1)) / np.log(BUCKET_RATIO))
    edges = np.flatnonzero(np.diff(bucket)) + 1
    batches: list[np.ndarray] = []
    carry = order[:0]
    for part, part_lengths in zip(np.split(order, edges), np.split(lengths, edges)):
        members = np.concatenate([carry, part])
        n = items_per_batch(int(part_lengths[-1]), max_tokens, max_sentences)
        full = len(members) // n * n
        batches.extend(np.split(members[:full], full // n) if full else [])
        carry = members[full:]
    if len(carry):
        batches.append(carry)
    return batches


def batch_fill(sizes: np.ndarray, batches: list[np.ndarray], max_tokens: int,
               fill_crop: bool) -> dict[str, float]:
    """How full batches are and how much loaded audio the crops drop (sizes capped already).

    fill: samples trained on / (batches x max_tokens); crop_waste: samples cropped away / samples
    loaded. `fill_crop`: batches are also cropped to max_tokens // n (`bucket_batches`)."""
    trained = loaded = 0
    for batch in batches:
        lengths = sizes[batch]
        crop = int(lengths.min())
        if fill_crop:
            crop = min(crop, max_tokens // len(batch))
        trained += crop * len(batch)
        loaded += int(lengths.sum())
    return {"fill": trained / (len(batches) * max_tokens), "crop_waste": 1 - trained / loaded,
            "batches": len(batches), "items_per_batch": sum(map(len, batches)) / len(batches)}


def conv_layers(model_cfg: dict[str, Any]) -> list[tuple[int, int, int]]:
    """(channels, kernel, stride) of the feature encoder, from fairseq's spec string (which
    fairseq itself evaluates as Python)."""
    spec = eval(model_cfg["conv_feature_layers"], {"__builtins__": {}})
    return [(int(c), int(k), int(s)) for c, k, s in spec]


def feature_frames(model_cfg: dict[str, Any], samples: int) -> int:
    """Frames the feature encoder makes of `samples` audio samples, after the model's crop to a
    multiple of `crop_seq_to_multiple`."""
    for _, kernel, stride in conv_layers(model_cfg):
        samples = (samples - kernel) // stride + 1
    return samples - samples % model_cfg.get("crop_seq_to_multiple", 1)


class MaskMaker:
    """wav2vec 2.0's time masks for a collated batch, drawn exactly as `Wav2Vec2Model.apply_mask`
    draws them (same function, same arguments, numpy's global generator)."""

    def __init__(self, model_cfg: dict[str, Any]):
        self.cfg = model_cfg

    def frames(self, samples: int) -> int:
        return feature_frames(self.cfg, samples)

    def __call__(self, batch: int, samples: int) -> torch.Tensor:
        from fairseq.data.data_utils import compute_mask_indices

        c = self.cfg
        mask = compute_mask_indices(
            (batch, self.frames(samples)), None, c["mask_prob"], c["mask_length"],
            c["mask_selection"], c["mask_other"], min_masks=2, no_overlap=c["no_mask_overlap"],
            min_space=c["mask_min_space"], require_same_masks=c["require_same_masks"],
            mask_dropout=c["mask_dropout"])
        return torch.from_numpy(mask)


_threads_limited: dict[str, int] = {}


def _limit_loader_threads(threads: int) -> None:
    """Once per loader worker process: torch's intra-op threads (the main process is left alone)."""
    in_worker = torch.utils.data.get_worker_info() is not None
    if in_worker and _threads_limited.get("threads") != threads:
        torch.set_num_threads(threads)
        _threads_limited["threads"] = threads


def _crop_to_fill(dataset: Any, samples: list[dict[str, Any]], fill_tokens: int
                  ) -> list[dict[str, Any]]:
    """Crop every source to min(shortest, max_sample_size, fill_tokens // n), the way the collater
    crops (same random windows, drawn in the same order): the batch is at most fill_tokens."""
    live = [s for s in samples if s["source"] is not None]
    if not live:
        return samples
    shortest = min(len(s["source"]) for s in live)
    target = min(shortest, dataset.max_sample_size, fill_tokens // len(live))
    return [s if s["source"] is None or len(s["source"]) <= target
            else {**s, "source": dataset.crop_to_max_size(s["source"], target)} for s in samples]


def _batch_by_size(original: Callable[..., Any]) -> Callable[..., Any]:
    def batch_by_size(self: Any, indices: Any, max_tokens: int | None = None,
                      max_sentences: int | None = None,
                      required_batch_size_multiple: int = 1) -> Any:
        if self.pad or not max_tokens:
            return original(self, indices, max_tokens, max_sentences, required_batch_size_multiple)
        self.speechfm_fill_tokens = int(max_tokens)
        indices = np.asarray(indices, dtype=np.int64)
        try:  # fairseq's count: sizes capped at max_sample_size (the index dataset has it)
            lengths = self.num_tokens_vec(indices)
        except NotImplementedError:
            lengths = np.minimum(np.asarray(self.sizes)[indices], self.max_sample_size)
        return fill_batches(lengths, indices, int(max_tokens), max_sentences)
    return batch_by_size


def _collater(original: Callable[..., Any], fast: FastPaths,
              masks: MaskMaker | None) -> Callable[..., Any]:
    def collater(self: Any, samples: list[dict[str, Any]]) -> dict[str, Any]:
        if fast.loader_threads:
            _limit_loader_threads(fast.loader_threads)
        fill_tokens = getattr(self, "speechfm_fill_tokens", 0)
        if fill_tokens and not self.pad:
            samples = _crop_to_fill(self, samples, fill_tokens)
        batch = original(self, samples)
        wants_mask = masks is not None and batch and not self.pad
        if wants_mask and "mask_indices" not in batch["net_input"]:
            mask = masks(*batch["net_input"]["source"].shape)
            batch["net_input"]["mask_indices"] = mask
            batch["sample_size"] = int(mask.sum())  # what the criterion counts (no device sync)
        return batch
    return collater


# --- installing -----------------------------------------------------------------------------

def _build_model(original: Callable[..., Any], fast: FastPaths) -> Callable[..., Any]:
    def build_model(self: Any, cfg: Any, from_checkpoint: bool = False) -> Any:
        model = original(self, cfg, from_checkpoint)
        done = apply_to_model(model, fast)
        if done:
            log.info("fast paths in the model: %s", ", ".join(done))
        return model
    return build_model


def install(fast: FastPaths | dict[str, Any], config: dict[str, Any]) -> Patches:
    """Install the switched-on paths in this process for a job with fairseq `config`."""
    from fairseq import optim
    from fairseq.data.audio.raw_audio_dataset import RawAudioDataset
    from fairseq.optim.adam import FairseqAdam
    from fairseq.tasks.fairseq_task import FairseqTask

    fast = fast if isinstance(fast, FastPaths) else FastPaths.from_dict(fast)
    patches = Patches()
    if not fast.on():
        return patches
    if fast.sdpa_attention or fast.sync_free or fast.compile_layers:
        patches.set(FairseqTask, "build_model", _build_model(FairseqTask.build_model, fast))
    if fast.fused_adam:
        patches.set(FairseqAdam, "__init__", _adam_init(FairseqAdam.__init__))
        patches.set(optim, "FP16Optimizer", flat_master_optimizer_class())
    masks = None
    model_cfg = config.get("model", {})
    if fast.precompute_masks:
        if model_cfg.get("_name") == "wav2vec2" and model_cfg.get("mask_prob", 0) > 0:
            masks = MaskMaker(model_cfg)
        else:
            log.info("precompute_masks: not a masked wav2vec2 pre-training model, left to fairseq")
    if fast.bucket_batches:
        patches.set(RawAudioDataset, "batch_by_size", _batch_by_size(RawAudioDataset.batch_by_size))
    if masks is not None or fast.bucket_batches or fast.loader_threads:
        patches.set(RawAudioDataset, "collater", _collater(RawAudioDataset.collater, fast, masks))
    log.info("fast paths on: %s", ", ".join(fast.on()))
    return patches


@contextmanager
def installed(fast: FastPaths | dict[str, Any], config: dict[str, Any]) -> Iterator[FastPaths]:
    """`install` for the duration of a block (benchmarks and tests compare paths in one process)."""
    fast = fast if isinstance(fast, FastPaths) else FastPaths.from_dict(fast)
    patches = install(fast, config)
    try:
        yield fast
    finally:
        patches.restore()
