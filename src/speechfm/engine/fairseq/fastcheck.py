"""Check on this machine that each fast path gives plain fairseq's numbers (float32).

A tiny wav2vec 2.0 (the `tiny` preset, dropouts off) runs one fixed batch with and without each
model path; the optimizer paths take the same gradients for a few steps. Kernels differ between
CPUs, GPUs and ROCm, so the benchmark runs this first wherever it runs. Errors are relative: the
loss to the loss, each gradient or parameter tensor to its largest element (floored at 1e-3 of
the model's largest gradient: a key projection's bias has an exactly-zero true gradient, softmax
being shift invariant, so both sides hold rounding noise there).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from speechfm.engine.fairseq import fastpaths as fp


@contextmanager
def seeded_mask_draws() -> Iterator[Callable[[int], None]]:
    """fairseq 0.12's `compute_mask_indices` draws every row from `np.random.default_rng(None)`:
    fresh OS entropy that no seed controls. Within: counter-seeded generators, so two runs draw the
    same masks. Yields `reset(seed)`: numpy, torch and the counter back to the start."""
    original = np.random.default_rng
    counter = {"it": itertools.count()}

    def default_rng(seed: Any = None) -> np.random.Generator:
        return original(10_000 + next(counter["it"]) if seed is None else seed)

    def reset(seed: int = 1) -> None:
        counter["it"] = itertools.count()
        np.random.seed(seed)
        torch.manual_seed(seed)

    np.random.default_rng = default_rng
    try:
        yield reset
    finally:
        np.random.default_rng = original


def tiny_model_cfg(*overrides: str) -> dict[str, Any]:
    """The tiny preset's model config with every dropout off (train mode stays deterministic)."""
    from speechfm.core.presets import load_pretrain
    from speechfm.engine.fairseq.job import compose_config

    items = ["model.dropout=0", "model.attention_dropout=0", *overrides]
    return compose_config(load_pretrain("tiny")["fairseq"], overrides=items)["model"]


def build_model(model_cfg: dict[str, Any], seed: int = 0, device: str = "cpu") -> torch.nn.Module:
    from fairseq.models.wav2vec.wav2vec2 import Wav2Vec2Config, Wav2Vec2Model
    from omegaconf import OmegaConf

    torch.manual_seed(seed)
    cfg = OmegaConf.merge(OmegaConf.structured(Wav2Vec2Config), model_cfg)
    return Wav2Vec2Model(cfg).to(device)


def loss_and_grads(model: torch.nn.Module, batch: dict[str, Any],
                   reset: Callable[[], None]) -> tuple[float, dict[str, torch.Tensor]]:
    """Loss and parameter gradients of the wav2vec criterion on `batch`, in train mode."""
    from fairseq.criterions.wav2vec_criterion import Wav2vecCriterion

    criterion = Wav2vecCriterion(None, infonce=True, loss_weights=[0.1, 10])
    model.train()
    model.zero_grad()
    reset()
    loss, _, _ = criterion(model, batch)
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    return float(loss.detach()), grads


def grad_error(ref: dict[str, torch.Tensor], got: dict[str, torch.Tensor]) -> float:
    """Largest relative difference over the gradient tensors (see the module docstring)."""
    if ref.keys() != got.keys():
        raise ValueError(f"different parameters have gradients: {sorted(ref.keys() ^ got.keys())}")
    floor = 1e-3 * max(g.abs().max().item() for g in ref.values())
    return max(((ref[n] - got[n]).abs().max() / max(ref[n].abs().max().item(), floor)).item()
               for n in ref)


def _model_rows(device: str, compile_layers: bool) -> list[dict[str, Any]]:
    model_cfg = tiny_model_cfg()
    gen = torch.Generator().manual_seed(3)
    batch = {"net_input": {"source": torch.randn(3, 24000, generator=gen).to(device)},
             "id": torch.arange(3)}
    rows = []
    with seeded_mask_draws() as reset:
        plain = build_model(model_cfg, device=device)
        ref_loss, ref_grads = loss_and_grads(plain, batch, reset)
        cases = {"sdpa_attention": {"sdpa_attention": True}}
        if device == "cpu":  # on a GPU the negatives come from the device's generator: other draws
            cases["sync_free"] = {"sync_free": True}
        if compile_layers:
            cases["compile_layers"] = {"sdpa_attention": True, "compile_layers": True}
        for name, switches in cases.items():
            fast = build_model(model_cfg, device=device)
            fast.load_state_dict(plain.state_dict())
            fp.apply_to_model(fast, fp.FastPaths(**switches))
            loss, grads = loss_and_grads(fast, batch, reset)
            rows.append({"path": name, "loss": abs(loss - ref_loss) / abs(ref_loss),
                         "grads": grad_error(ref_grads, grads)})
        masks = fp.MaskMaker(model_cfg)  # drawn as the loader workers draw them
        reset()
        mask = masks(3, 24000).to(device)
        with_mask = {**batch, "net_input": {**batch["net_input"], "mask_indices": mask},
                     "sample_size": int(mask.sum())}
        loss, grads = loss_and_grads(plain, with_mask, lambda: torch.manual_seed(1))
        rows.append({"path": "precompute_masks", "loss": abs(loss - ref_loss) / abs(ref_loss),
                     "grads": grad_error(ref_grads, grads)})
    return rows


def _optimizer_cfg(*overrides: str) -> Any:
    from omegaconf import OmegaConf

    from speechfm.core.presets import load_pretrain
    from speechfm.engine.fairseq.job import compose_config

    preset = load_pretrain("tiny")["fairseq"]
    return OmegaConf.create(compose_config(preset, overrides=list(overrides)))


def adam_steps(fast: bool, start: list[torch.Tensor], steps: int = 6) -> list[torch.Tensor]:
    """Parameters after `steps` fairseq `adam` steps (clipped, changing lr) on fixed gradients."""
    from fairseq import optim

    params = [torch.nn.Parameter(t.clone()) for t in start]
    with fp.installed({"fused_adam": fast}, {}):
        opt = optim.build_optimizer(_optimizer_cfg().optimizer, params)
    for step in range(steps):
        gen = torch.Generator().manual_seed(100 + step)
        for p in params:
            p.grad = (torch.randn(p.shape, generator=gen) * 10.0 ** -(step % 4)).to(p.device)
        opt.set_lr(1e-3 * (step + 1))
        opt.clip_grad_norm(1.0)
        opt.step()
        opt.zero_grad()
    return [p.detach() for p in params]


def master_steps(fast: bool, start: list[torch.Tensor], precision: str,
                 steps: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """(fp32 master, model weights) after `steps` of fairseq's FP16Optimizer in bf16 or fp16.
    Plain: fairseq's one fp32 master per parameter (its bf16 path; in fp16 the unflattened twin
    of its flat master, which needs CUDA); fast: the flat master stepped by the fused AdamW."""
    from fairseq import optim

    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    flags = ["common.bf16=true" if precision == "bf16" else "common.fp16=true"]
    cfg = _optimizer_cfg(*flags, *([] if fast else ["common.fp16_no_flatten_grads=true"]))
    params = [torch.nn.Parameter(t.clone().to(dtype)) for t in start]
    with fp.installed({"fused_adam": fast}, {}):
        opt = optim.FP16Optimizer.build_optimizer(cfg, params)
    for step in range(steps):
        opt.set_lr(1e-3)
        opt.zero_grad()
        gen = torch.Generator().manual_seed(step)
        opt.backward(sum((p.float() * torch.randn(p.shape, generator=gen).to(p.device)).sum()
                         * 10.0 ** -(step % 3) for p in params))  # fp16: scaled by the scaler
        opt.multiply_grads(0.5)
        opt.clip_grad_norm(1.0)
        opt.step()
    master = (next(iter(opt.fp32_params.values())) if opt.has_flat_params
              else torch.cat([p.detach().reshape(-1) for p in opt.fp32_params]))
    return master.detach().clone(), torch.cat([p.detach().float().reshape(-1) for p in params])


def _optimizer_rows(device: str) -> list[dict[str, Any]]:
    gen = torch.Generator().manual_seed(0)
    start = [torch.randn(s, generator=gen).to(device) for s in [(64, 32), (32,), (7, 5, 3)]]
    ref, got = adam_steps(False, start), adam_steps(True, start)
    rows = [{"path": "fused_adam (fp32)", "loss": None,
             "params": max(((a - b).abs().max() / a.abs().max()).item() for a, b in zip(ref, got))}]
    for precision in ("bf16", "fp16"):
        (ref_master, _), (got_master, _) = (master_steps(False, start, precision),
                                            master_steps(True, start, precision))
        rows.append({"path": f"fused_adam ({precision} master)", "loss": None,
                     "params": ((ref_master - got_master).abs().max()
                                / ref_master.abs().max()).item()})
    return rows


def check(device: str = "cpu", compile_layers: bool = False) -> list[dict[str, Any]]:
    """One row per path: relative error of the loss and the gradients (model paths) or of the
    parameters after a few steps (optimizer paths), against plain fairseq, in float32."""
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        return _model_rows(device, compile_layers) + _optimizer_rows(device)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
