"""Integrated Gradients of a wav2vec2 CTC model with respect to the output of each transformer layer.

One utterance at a time: one forward of the audio and one of zero audio record every layer's output;
for layer l only the layers above l run again, on all interpolation steps in one batch, and one
backward per predicted character gives that character's gradients (the forward is shared by all
characters). This is exactly what captum's `LayerIntegratedGradients` computes per layer and
target, without recomputing the network below l for every step and every target.

Two more savings, both exact: the backward starts below the (linear) CTC head, whose gradient for
"logit of c summed over frames" is the head's row for c at every frame, so the last layer needs no
backward at all; and the erf GELU of the feed-forward blocks keeps its derivative from the forward,
so the K backwards through a block multiply by it instead of recomputing it K times.

The K backwards run one after another (`loop`, fastest on CPU) or as one vmapped backward over the
K grad_outputs (`batched`, `autograd.grad(is_grads_batched=True)`: larger kernels for a GPU); both
give the same attributions.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from speechfm.core.errors import SpeechfmError

METHODS = ("gausslegendre", "riemann_trapezoid", "riemann_middle", "riemann_left", "riemann_right")
"""Quadrature rules of the path integral (the names and rules of captum; captum's default first)."""

CHUNK_MEMORY_BYTES = 2 * 1024**3
"""Activation memory one chunk of interpolation steps may hold for the backward (auto chunk size);
on a GPU, half of its free memory when that is more."""

TARGET_BATCHING = ("auto", "batched", "loop")
"""How the per-character backwards run: auto (batched on a GPU, a loop on CPU), or either."""


def memory_budget(device: torch.device | str) -> int:
    """Bytes the saved activations (and batched gradients) of one chunk may take on `device`."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return max(CHUNK_MEMORY_BYTES, free // 2)
    return CHUNK_MEMORY_BYTES


def batched_targets(target_batching: str, device: torch.device | str) -> bool:
    """Whether the per-character backwards run batched (see TARGET_BATCHING)."""
    if target_batching not in TARGET_BATCHING:
        raise SpeechfmError(f"unknown target batching '{target_batching}'",
                            hint=f"choose one of {', '.join(TARGET_BATCHING)}")
    if target_batching == "auto":
        return torch.device(device).type == "cuda"
    return target_batching == "batched"


def quadrature(method: str, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(alphas, weights) of the interpolation path, as captum's IG uses them for `method`."""
    from captum.attr._utils.approximation_methods import approximation_parameters

    if method not in METHODS:
        raise SpeechfmError(f"unknown IG method '{method}'", hint=f"choose one of {', '.join(METHODS)}")
    weights_of, alphas_of = approximation_parameters(method)
    alphas = torch.tensor([float(a) for a in alphas_of(steps)], dtype=torch.float64)
    # captum casts the step weights to float32 before scaling the gradients; do the same.
    weights = torch.tensor([float(w) for w in weights_of(steps)], dtype=torch.float32)
    return alphas, weights.double()


@dataclass
class UtteranceForward:
    """What the two plain forwards of one utterance give: predictions and every layer's output."""

    logits: torch.Tensor  # [T, V] of the audio
    baseline_logits: torch.Tensor  # [T, V] of zero audio of the same length
    predicted: torch.Tensor  # [T] greedy (arg-max) token per frame
    layers: list[torch.Tensor]  # per layer, [T, H] output for the audio
    baseline_layers: list[torch.Tensor]  # per layer, [T, H] output for zero audio


class _GeluKeepingDerivative(torch.autograd.Function):
    """`gelu(x)` (erf form, bit-identical to torch's) that computes its derivative once in the
    forward when a gradient will be asked for; every backward through it is then one multiply."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        if ctx.needs_input_grad[0]:
            cdf = 0.5 * (1.0 + torch.erf(x * (1.0 / math.sqrt(2.0))))
            pdf = torch.exp(-0.5 * x * x) * (1.0 / math.sqrt(2.0 * math.pi))
            ctx.save_for_backward(cdf + x * pdf)
        return nn.functional.gelu(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (derivative,) = ctx.saved_tensors
        return grad * derivative


class _Gelu(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _GeluKeepingDerivative.apply(x)


def _is_erf_gelu(act: object) -> bool:
    """True for the activations that compute exactly `torch.nn.functional.gelu(x)` (erf form)."""
    if isinstance(act, nn.GELU):
        return act.approximate == "none"
    return type(act).__name__ == "GELUActivation" and getattr(act, "act", None) is nn.functional.gelu


class LayerTop:
    """The part of a `Wav2Vec2ForCTC` above a transformer layer: the remaining layers, the final
    layer norm (stable-layer-norm models), the adapter (if any) and the CTC head."""

    def __init__(self, model: nn.Module):
        if not hasattr(model, "wav2vec2") or not hasattr(model, "lm_head"):
            raise SpeechfmError(f"{type(model).__name__} is not a wav2vec2 CTC model",
                                hint="expected a transformers Wav2Vec2ForCTC")
        if not isinstance(model.lm_head, nn.Linear) or model.training:
            raise SpeechfmError("the CTC head must be a linear layer and the model in eval mode",
                                hint="load the model with speechfm.interpret.lur.load_model")
        self.model = model
        self.encoder = model.wav2vec2.encoder
        self.layers = list(self.encoder.layers)
        stable = type(self.encoder).__name__.endswith("StableLayerNorm")
        self.final_norm = self.encoder.layer_norm if stable else None
        self.adapter = getattr(model.wav2vec2, "adapter", None)
        self.head = model.lm_head

    def hidden(self, layer: int, hidden: torch.Tensor) -> torch.Tensor:
        """What the CTC head reads [B, T, H'] from the output [B, T, H] of transformer layer `layer`
        (0-based); the input itself when nothing lies between that layer and the head."""
        for block in self.layers[layer + 1:]:
            hidden = block(hidden, attention_mask=None)
        if self.final_norm is not None:
            hidden = self.final_norm(hidden)
        if self.adapter is not None:
            hidden = self.adapter(hidden)
        return hidden

    def __call__(self, layer: int, hidden: torch.Tensor) -> torch.Tensor:
        """Logits [B, T, V] from the output [B, T, H] of transformer layer `layer` (0-based)."""
        return self.head(self.model.dropout(self.hidden(layer, hidden)))

    @contextmanager
    def gelu_keeping_derivative(self) -> Iterator[None]:
        """Within: the feed-forward blocks' erf GELUs keep their derivative (same outputs)."""
        swapped = []
        for block in self.layers:
            ff = getattr(block, "feed_forward", None)
            if ff is not None and _is_erf_gelu(getattr(ff, "intermediate_act_fn", None)):
                swapped.append((ff, ff.intermediate_act_fn))
                ff.intermediate_act_fn = _Gelu()
        try:
            yield
        finally:
            for ff, act in swapped:
                ff.intermediate_act_fn = act


@torch.no_grad()
def forward_utterance(model: nn.Module, input_values: torch.Tensor) -> UtteranceForward:
    """Run the audio and zero audio (the IG baseline) once, recording every layer's output."""
    layers = model.wav2vec2.encoder.layers
    outputs: list[torch.Tensor] = []
    hooks = [block.register_forward_hook(lambda _m, _i, out: outputs.append(out)) for block in layers]
    try:
        both = torch.stack([input_values, torch.zeros_like(input_values)])
        logits = model(both).logits
    finally:
        for hook in hooks:
            hook.remove()
    if len(outputs) != len(layers):
        raise SpeechfmError(f"{len(outputs)} of {len(layers)} transformer layers ran",
                            hint="the model must be in eval mode (no layer drop)")
    return UtteranceForward(
        logits=logits[0], baseline_logits=logits[1], predicted=logits[0].argmax(-1),
        layers=[out[0] for out in outputs], baseline_layers=[out[1] for out in outputs],
    )


def targets_of(predicted: torch.Tensor, blank: int) -> list[int]:
    """The distinct predicted tokens of an utterance, blank (CTC's pad) left out, in id order."""
    return [t for t in torch.unique(predicted).tolist() if t != blank]


def _layer_bytes(top: LayerTop, frames: int, itemsize: int) -> int:
    """Saved activations of one layer and one step (about 10 hidden-sized and 2 feed-forward-sized
    tensors); also about what one target's gradients through a layer hold in a batched backward."""
    config = top.model.config
    return frames * (10 * config.hidden_size + 2 * config.intermediate_size) * itemsize


def auto_chunk(top: LayerTop, layer: int, frames: int, steps: int, itemsize: int,
               budget: int = CHUNK_MEMORY_BYTES) -> int:
    """Interpolation steps per forward so that the saved activations of the layers above `layer`
    stay near `budget` bytes."""
    per_step = max(1, len(top.layers) - 1 - layer) * _layer_bytes(top, frames, itemsize)
    return max(1, min(steps, budget // per_step))


def layer_attributions(
    top: LayerTop, layer: int, act: torch.Tensor, baseline: torch.Tensor, targets: list[int],
    alphas: torch.Tensor, weights: torch.Tensor, chunk: int = 0, batched: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """IG attributions [K, T, H] of layer `layer`'s output for each target's logit summed over
    frames, and each target's score at the baseline [K] (for the completeness check).

    The path `baseline + alpha * (act - baseline)` is evaluated `chunk` steps per forward; each
    forward serves all K targets through one backward per target, or (`batched`) through vmapped
    backwards of as many targets as the memory budget holds (0: chunk from the memory budget).
    The target's score is linear in what the head reads (`top.hidden`), with gradient the head's
    weight row of the target at every frame, so each backward starts there."""
    dtype = act.dtype
    budget = memory_budget(act.device)
    chunk = chunk or auto_chunk(top, layer, act.shape[0], len(alphas), act.element_size(), budget)
    delta = act - baseline
    index = torch.tensor(targets, device=act.device)
    rows = top.head.weight.detach()[index]  # [K, H'] d(score_k) / d(hidden at any frame)
    grads = torch.zeros((len(targets),) + act.shape, dtype=torch.float64, device=act.device)
    a64, w64 = alphas.to(act.device), weights.to(act.device)
    for start in range(0, len(alphas), chunk):
        a = a64[start:start + chunk]
        w = w64[start:start + chunk]
        path = (baseline + a.to(dtype)[:, None, None] * delta).requires_grad_(True)
        with top.gelu_keeping_derivative():
            hidden = top.hidden(layer, path)
        if hidden is path:  # the last layer, read by the head directly: a constant gradient
            grads += w.sum() * rows.double()[:, None, :]
            continue
        if batched:
            group = max(1, budget // (len(a) * _layer_bytes(top, act.shape[0], act.element_size())))
            for k in range(0, len(targets), group):
                outputs = rows[k:k + group, None, None, :].expand(-1, *hidden.shape)
                (grad,) = torch.autograd.grad(hidden, path, grad_outputs=outputs,
                                              is_grads_batched=True,
                                              retain_graph=k + group < len(targets))
                grads[k:k + group] += torch.einsum("s,ksth->kth", w, grad.double())
            continue
        for k in range(len(targets)):
            (grad,) = torch.autograd.grad(hidden, path, grad_outputs=rows[k].expand_as(hidden),
                                          retain_graph=k < len(targets) - 1)
            grads[k] += torch.einsum("s,sth->th", w, grad.double())
    with torch.no_grad():
        base_scores = top(layer, baseline[None])[0][:, index].sum(0)
    return (grads * delta.double()).to(dtype), base_scores
