"""The Layer Utilization Rate: running per-layer, per-character sums of IG attributions and the
share of neurons that are relevant for at least one character.

Nothing per frame is kept: for each layer l and token c, the sum of the attribution vectors over
the frames where c was predicted and the number of such frames. The state is a few arrays that
are saved to the report folder every few utterances, so a long test set can be resumed.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from speechfm.core.curves import write_summary
from speechfm.core.errors import SpeechfmError
from speechfm.interpret import ig

log = logging.getLogger(__name__)

STATE_FILE = "lur_state.npz"


@dataclass
class LurState:
    """Running sums over the utterances done so far (all arrays float64 / int64)."""

    layers: list[int]
    hidden: int
    vocab: int
    sums: np.ndarray = field(init=False)  # [len(layers), vocab, hidden]
    counts: np.ndarray = field(init=False)  # [len(layers), vocab] frames where the token was predicted
    done: int = 0  # utterances processed, in data order
    frames: int = 0
    completeness: list[float] = field(default_factory=list)  # per (utterance, layer, target): rel. error

    def __post_init__(self) -> None:
        self.sums = np.zeros((len(self.layers), self.vocab, self.hidden))
        self.counts = np.zeros((len(self.layers), self.vocab), dtype=np.int64)

    def save(self, path: Path, settings: dict) -> None:
        """Write the state atomically (a crash mid-write leaves the previous state)."""
        tmp = path.with_name(path.name + ".part.npz")
        np.savez(tmp, sums=self.sums, counts=self.counts, layers=np.array(self.layers),
                 completeness=np.array(self.completeness),
                 meta=np.array(json.dumps({"done": self.done, "frames": self.frames,
                                           "settings": settings})))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path, settings: dict) -> LurState:
        """The saved state, refused if it was made with other settings (model, data, steps...)."""
        try:
            with np.load(path) as data:
                meta = json.loads(str(data["meta"]))
                if meta["settings"] != settings:
                    changed = sorted(k for k in settings | meta["settings"]
                                     if settings.get(k) != meta["settings"].get(k))
                    raise SpeechfmError(f"saved state was made with other settings ({', '.join(changed)})",
                                        path=path, hint="use the same options, or a new --out")
                state = cls(layers=data["layers"].tolist(), hidden=data["sums"].shape[2],
                            vocab=data["sums"].shape[1])
                state.sums, state.counts = data["sums"], data["counts"]
                state.completeness = data["completeness"].tolist()
        except (OSError, ValueError, KeyError) as exc:
            raise SpeechfmError(f"cannot read the saved state: {exc}", path=path,
                                hint="delete it to start again") from exc
        state.done, state.frames = meta["done"], meta["frames"]
        return state


def relevant_neurons(sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """[vocab, hidden] booleans of one layer: neuron i is relevant for token c when c's mean
    attribution at i is above +std or below -std (std across the layer's neurons, ddof 0)."""
    seen = counts > 0
    means = np.zeros_like(sums)
    means[seen] = sums[seen] / counts[seen, None]
    std = means.std(axis=1, keepdims=True)
    return seen[:, None] & ((means > std) | (means < -std))


def layer_utilization(state: LurState) -> list[float]:
    """LUR per analysed layer in percent: neurons relevant for at least one token."""
    return [float(100.0 * relevant_neurons(s, c).any(axis=0).mean())
            for s, c in zip(state.sums, state.counts)]


def accumulate_utterance(
    state: LurState, top: ig.LayerTop, model: torch.nn.Module, input_values: torch.Tensor,
    alphas: torch.Tensor, weights: torch.Tensor, blank: int, chunk: int = 0,
    progress: Iterable | None = None, batched: bool = False,
) -> None:
    """Add one utterance's attributions to the running sums of every analysed layer."""
    fwd = ig.forward_utterance(model, input_values)
    targets = ig.targets_of(fwd.predicted, blank)
    state.frames += int(fwd.predicted.numel())
    if targets:
        masks = torch.stack([fwd.predicted == t for t in targets]).to(fwd.logits.dtype)  # [K, T]
        final = fwd.logits[:, targets].sum(0).double()
        for i, layer in enumerate(state.layers):
            attr, base_scores = ig.layer_attributions(
                top, layer, fwd.layers[layer], fwd.baseline_layers[layer], targets, alphas,
                weights, chunk, batched=batched)
            kept = torch.einsum("kt,kth->kh", masks.double(), attr.double())
            state.sums[i, targets] += kept.cpu().numpy()
            state.counts[i, targets] += masks.sum(1).long().cpu().numpy()
            diff = final - base_scores.double()
            err = (attr.double().sum((1, 2)) - diff).abs() / diff.abs().clamp_min(1e-12)
            state.completeness.extend(err.cpu().tolist())
            if progress is not None:
                progress.update(1)
    elif progress is not None:
        progress.update(len(state.layers))
    state.done += 1


def check_top(model: torch.nn.Module, input_values: torch.Tensor) -> None:
    """Refuse a model whose layers above l do not reproduce its own logits (an architecture this
    analysis does not know), rather than report attributions of a different network."""
    fwd = ig.forward_utterance(model, input_values)
    top = ig.LayerTop(model)
    with torch.no_grad():
        for layer, act in enumerate(fwd.layers):
            logits = top(layer, act[None])[0]
            if not torch.allclose(logits, fwd.logits, rtol=1e-4, atol=1e-4 * float(fwd.logits.abs().max())):
                raise SpeechfmError(
                    f"the network above layer {layer} does not reproduce the model's logits",
                    hint=f"{type(model).__name__} with encoder {type(top.encoder).__name__} "
                         "is not a supported wav2vec2 CTC layout")


def parse_layers(spec: str, num_layers: int) -> list[int]:
    """`all` or 1-based numbers and ranges (`1,3,5-8`) -> sorted 0-based layer indices."""
    if spec.strip().lower() == "all":
        return list(range(num_layers))
    chosen: set[int] = set()
    try:
        for part in spec.split(","):
            lo, _, hi = part.strip().partition("-")
            chosen.update(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise SpeechfmError(f"bad --layers '{spec}'", hint="use 'all' or e.g. '1,3,5-8'") from None
    if not chosen or min(chosen) < 1 or max(chosen) > num_layers:
        raise SpeechfmError(f"--layers '{spec}' is outside 1-{num_layers}",
                            hint=f"the model has {num_layers} transformer layers")
    return sorted(c - 1 for c in chosen)


@dataclass
class LurRun:
    """Everything one analysis needs: model folder, data, report folder and IG settings."""

    model_dir: Path
    data: Path
    out: Path
    layers: str = "all"
    steps: int = 50
    method: str = "gausslegendre"
    chunk: int = 0  # interpolation steps per forward; 0: from ig.memory_budget
    target_batching: str = "auto"  # ig.TARGET_BATCHING: the per-character backwards
    device: str = "auto"  # cpu, cuda, cuda:N; auto: cuda where there is one
    dtype: str = "float32"
    save_every: int = 10
    utterances: int | None = None  # analyse the first N (None: all)
    resume: bool = False


def resolve_device(device: str) -> str:
    """`auto` -> cuda where available, else cpu; a CUDA device that is not there is an error."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SpeechfmError(f"device {device}: no CUDA device is available",
                            hint="use --device cpu")
    return device


def load_model(model_dir: Path, device: str, dtype: str) -> tuple[torch.nn.Module, object]:
    """A transformers wav2vec2 CTC model (eval mode, no parameter gradients) and its processor."""
    from speechfm.core.ctc import load_ctc_model

    try:
        model, processor = load_ctc_model(model_dir)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SpeechfmError(f"cannot load a wav2vec2 CTC model and processor: {exc}",
                            path=model_dir) from exc
    model = model.to(device=device, dtype=getattr(torch, dtype)).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, processor


def analyse(cfg: LurRun) -> dict:
    """Run (or resume) the analysis; write the state, `lur.json` and the plots into `cfg.out`."""
    from tqdm import tqdm

    from speechfm.interpret import data as data_mod

    cfg = replace(cfg, device=resolve_device(cfg.device))
    utterances = data_mod.list_utterances(cfg.data)
    model, processor = load_model(cfg.model_dir, cfg.device, cfg.dtype)
    num_layers = len(model.wav2vec2.encoder.layers)
    layers = parse_layers(cfg.layers, num_layers)
    alphas, weights = ig.quadrature(cfg.method, cfg.steps)
    settings = {"model": str(cfg.model_dir.resolve()), "data": str(cfg.data.resolve()),
                "utterance_list": _digest([u.name for u in utterances]), "layers": layers,
                "steps": cfg.steps, "method": cfg.method, "dtype": cfg.dtype}
    cfg.out.mkdir(parents=True, exist_ok=True)
    state_path = cfg.out / STATE_FILE
    if state_path.exists() and not cfg.resume:
        raise SpeechfmError("a previous analysis is saved here", path=state_path,
                            hint="pass --resume to continue it, or choose another --out")
    if cfg.resume and state_path.exists():
        state = LurState.load(state_path, settings)
        log.info("resuming after %d of %d utterances", state.done, len(utterances))
    else:
        state = LurState(layers=layers, hidden=model.config.hidden_size, vocab=model.config.vocab_size)
    stop = len(utterances) if cfg.utterances is None else min(len(utterances), cfg.utterances)

    def features(index: int) -> torch.Tensor:
        audio = data_mod.load_audio(utterances[index])
        values = processor.feature_extractor(audio, sampling_rate=16000, return_tensors="pt").input_values[0]
        return values.to(device=cfg.device, dtype=getattr(torch, cfg.dtype))

    if state.done < stop:
        check_top(model, features(state.done))
    top = ig.LayerTop(model)
    blank = model.config.pad_token_id
    batched = ig.batched_targets(cfg.target_batching, cfg.device)
    with tqdm(total=(stop - state.done) * len(layers), desc="LUR utterances x layers", unit="layer",
              disable=None) as bar:
        while state.done < stop:
            accumulate_utterance(state, top, model, features(state.done), alphas, weights, blank,
                                 cfg.chunk, progress=bar, batched=batched)
            if state.done % cfg.save_every == 0 or state.done == stop:
                state.save(state_path, settings)
    report = build_report(state, cfg, processor, num_layers, len(utterances))
    write_report(report, cfg.out)
    return report


def _digest(names: list[str]) -> str:
    import hashlib

    return hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]


def build_report(state: LurState, cfg: LurRun, processor, num_layers: int, total: int) -> dict:
    """The `lur.json` content (schema in docs/interpret.md)."""
    tokens = processor.tokenizer.convert_ids_to_tokens(list(range(state.vocab)))
    relevant = {}
    for i, layer in enumerate(state.layers):
        per_token = relevant_neurons(state.sums[i], state.counts[i]).sum(axis=1)
        relevant[str(layer + 1)] = {tokens[c]: int(per_token[c])
                                    for c in range(state.vocab) if state.counts[i, c] > 0}
    errors = np.array(state.completeness) if state.completeness else np.zeros(1)
    return {
        "model": cfg.model_dir.resolve().name,
        "model_path": str(cfg.model_dir.resolve()),
        "data": str(cfg.data.resolve()),
        "utterances": state.done,
        "utterances_total": total,
        "frames": state.frames,
        "num_layers": num_layers,
        "hidden_size": state.hidden,
        "layers": [layer + 1 for layer in state.layers],
        "lur": layer_utilization(state),
        "relevant_neurons": relevant,
        "frames_per_token": {tokens[c]: int(state.counts[0, c])
                             for c in range(state.vocab) if state.counts[0, c] > 0},
        "completeness_error": {"max": float(errors.max()), "mean": float(errors.mean()),
                               "median": float(np.median(errors))},
        "settings": {"steps": cfg.steps, "method": cfg.method, "baseline": "zero audio",
                     "target": "logit of the token summed over all frames",
                     "std": "population (ddof 0) across the layer's neurons",
                     "dtype": cfg.dtype, "device": cfg.device, "chunk": cfg.chunk,
                     "target_batching": "batched" if ig.batched_targets(cfg.target_batching,
                                                                        cfg.device) else "loop"},
    }


def write_report(report: dict, out: Path) -> None:
    """`lur.json`, `lur.svg`, `lur.png`, `lur.tsv` (per-layer rows) and `summary.json` (the LUR
    per layer, the DVC metric) in `out`."""
    from speechfm.interpret.plot import plot_reports

    tmp = out / "lur.json.part"
    tmp.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, out / "lur.json")
    rows = "".join(f"{layer}\t{value}\n" for layer, value in zip(report["layers"], report["lur"]))
    (out / "lur.tsv").write_text("layer\tlur\n" + rows, encoding="utf-8")  # for `dvc plots`
    write_summary(out, {"lur": dict(zip(map(str, report["layers"]), report["lur"]))})
    plot_reports([report], out / "lur")
