"""ONNX graphs of a CTC model folder, for ONNX Runtime: export (float32 and an int8 variant) and
batched logits that equal per-clip logits, as `speechfm.core.ctc.ctc_logits` gives them.

The model is exported as two graphs so batching stays exact (see `speechfm.core.ctc`): the
convolutional feature encoder (`features.onnx`, whose group norm must see one clip alone, run
per clip; its 1-D convolutions exported as 2-D ones of height 1, which ONNX Runtime runs faster) and the rest (`model.onnx`: feature projection, transformer with a frame mask, CTC
head, run on the padded batch of frame sequences). The int8 variant `model.int8.onnx` quantizes
only the transformer's MatMuls (dynamic, int8 weights); the convolutions stay float in both, as
quantizing them ruins wav2vec2's accuracy. `onnx.json` records the weights' hash, so a graph
exported before the weights changed is refused instead of served.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np

from speechfm.core.constants import SAMPLE_RATE
from speechfm.core.errors import SpeechfmError

log = logging.getLogger(__name__)

FEATURES = "features.onnx"
GRAPHS = {"float32": "model.onnx", "int8": "model.int8.onnx"}
MANIFEST = "onnx.json"
WEIGHTS = "model.safetensors"
OPSET = 17
EXPORT_TOLERANCE = 1e-3
"""Largest |logit difference| from torch accepted right after export (tests hold 1e-4)."""


def weights_hash(model_dir: Path) -> str:
    """sha256 of the folder's safetensors weights (what the graphs were exported from)."""
    digest = hashlib.sha256()
    with (model_dir / WEIGHTS).open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def is_current(model_dir: Path) -> bool:
    """The folder holds every ONNX graph, exported from the weights it holds now."""
    try:
        manifest = json.loads((model_dir / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    graphs = [FEATURES, *GRAPHS.values()]
    return (all((model_dir / g).is_file() for g in graphs)
            and manifest.get("weights_sha256") == weights_hash(model_dir))


def export_onnx(model_dir: Path, out_dir: Path | None = None, int8: bool = True) -> list[Path]:
    """Write `features.onnx`, `model.onnx` (and `model.int8.onnx`) and `onnx.json` for the CTC
    folder `model_dir` (into `out_dir`, by default the folder itself); check ORT against torch."""
    import torch

    from speechfm.core.ctc import ctc_logits, load_ctc_model

    out_dir = out_dir or model_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    model, processor = load_ctc_model(model_dir, safetensors_only=True)
    model.requires_grad_(False)
    model.config._attn_implementation = "eager"  # plain MatMul/Softmax ops, quantizable
    w2v = model.wav2vec2
    written = [out_dir / FEATURES, out_dir / GRAPHS["float32"]]

    class Features(torch.nn.Module):
        """The conv feature encoder with each 1-D convolution as a 2-D one of height 1: the same
        arithmetic, but ONNX Runtime runs 2-D convolutions with its blocked (NCHWc) kernels,
        which took a 3 s clip's feature encoder from 92-97 ms to 66-75 ms on 2 cores."""

        def __init__(self) -> None:
            super().__init__()
            self.layers = w2v.feature_extractor.conv_layers
            for layer in self.layers:
                conv = layer.conv
                if conv.padding != (0,) or conv.dilation != (1,) or conv.groups != 1:
                    raise SpeechfmError("the feature encoder has a padded, dilated or grouped "
                                        "convolution, which the ONNX export does not handle",
                                        path=model_dir)

        def forward(self, input_values):
            h = input_values[:, None, None, :]  # [batch, channels 1, height 1, samples]
            for layer in self.layers:
                conv = layer.conv
                h = torch.nn.functional.conv2d(h, conv.weight[:, :, None, :], conv.bias,
                                               stride=(1, conv.stride[0]))
                norm = getattr(layer, "layer_norm", None)
                if isinstance(norm, torch.nn.GroupNorm):  # per channel over time, any height
                    h = norm(h)
                elif norm is not None:  # LayerNorm over the channels of each frame
                    h = norm(h.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
                h = layer.activation(h)
            return h[:, :, 0].transpose(1, 2)

    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w2v, self.head = w2v, model.lm_head

        def forward(self, features, mask):
            hidden, _ = self.w2v.feature_projection(features)
            hidden = self.w2v.encoder(hidden, attention_mask=mask).last_hidden_state
            if self.w2v.adapter is not None:
                hidden = self.w2v.adapter(hidden)
            return self.head(hidden)

    features, encoder = Features().eval(), Encoder().eval()  # export restores the mode it found
    rng = np.random.default_rng(0)
    audio = [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in (24000, 16000)]
    values = torch.from_numpy(audio[0])[None]
    with torch.inference_mode():
        feats = features(values)
        batch = torch.cat([feats, feats], 0)
        mask = torch.ones(batch.shape[:2], dtype=torch.bool)
        mask[1, batch.shape[1] // 2:] = False  # trace the masked path (the one every batch uses)
    quiet = {"dynamo": False, "opset_version": OPSET, "do_constant_folding": True}
    torch.onnx.export(features, (values,), str(written[0]), input_names=["input_values"],
                      output_names=["features"], **quiet,
                      dynamic_axes={"input_values": {1: "samples"}, "features": {1: "frames"}})
    torch.onnx.export(encoder, (batch, mask), str(written[1]),
                      input_names=["features", "mask"], output_names=["logits"], **quiet,
                      dynamic_axes={"features": {0: "batch", 1: "frames"},
                                    "mask": {0: "batch", 1: "frames"},
                                    "logits": {0: "batch", 1: "frames"}})
    if int8:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        written.append(out_dir / GRAPHS["int8"])
        quantize_dynamic(str(written[1]), str(written[2]), op_types_to_quantize=["MatMul"],
                         weight_type=QuantType.QInt8)
    want = ctc_logits(model, processor.feature_extractor, audio)
    got = OnnxCtc(out_dir, "float32", threads=1, check=False).logits(
        processor.feature_extractor, audio)
    diff = max(float(np.abs(g - w.numpy()).max()) for g, w in zip(got, want))
    if diff > EXPORT_TOLERANCE:
        raise SpeechfmError(f"the exported graphs' logits differ from torch by {diff:.2g}",
                            path=out_dir, hint="report this model's config.json")
    manifest = {"weights_sha256": weights_hash(model_dir), "opset": OPSET,
                "graphs": {"features": FEATURES, **{k: v for k, v in GRAPHS.items()
                                                    if (out_dir / v) in written}},
                "torch_max_abs_diff": diff}
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    log.info("exported %s to ONNX in %s (max |logit diff| vs torch %.2g)", model_dir, out_dir, diff)
    return [*written, out_dir / MANIFEST]


class OnnxCtc:
    """A CTC model's ONNX graphs in ONNX Runtime sessions (CPU), `dtype` float32 or int8."""

    def __init__(self, model_dir: Path, dtype: str = "float32", threads: int | None = None,
                 check: bool = True):
        import onnxruntime as ort

        if dtype not in GRAPHS:
            raise SpeechfmError(f"no ONNX graph for dtype '{dtype}'",
                                hint=f"choose one of {', '.join(GRAPHS)}")
        needed = (FEATURES, GRAPHS[dtype], *((MANIFEST,) if check else ()))
        missing = [n for n in needed if not (model_dir / n).is_file()]
        if missing:
            raise SpeechfmError(f"no ONNX export ({', '.join(missing)} missing)", path=model_dir,
                                hint="run 'speechfm export --onnx MODEL_DIR'")
        if check and (model_dir / WEIGHTS).is_file():
            recorded = json.loads((model_dir / MANIFEST).read_text()).get("weights_sha256")
            if recorded != weights_hash(model_dir):
                raise SpeechfmError("the ONNX graphs were exported from other weights",
                                    path=model_dir, hint="run 'speechfm export --onnx' again")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or len(os.sched_getaffinity(0))
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # worker threads that spin while waiting take the CPU from the event loop and request
        # decoding on a small machine; they sleep instead
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = ["CPUExecutionProvider"]
        self.features = ort.InferenceSession(str(model_dir / FEATURES), options,
                                             providers=providers)
        self.encoder = ort.InferenceSession(str(model_dir / GRAPHS[dtype]), options,
                                            providers=providers)

    def logits(self, feature_extractor, audios: list[np.ndarray]) -> list[np.ndarray]:
        """Logits [frames_i, vocab] of each 16 kHz clip: each clip normalised and through the
        feature encoder alone, the frame sequences padded and masked in one encoder run."""
        feats = []
        for audio in audios:
            values = feature_extractor(audio, sampling_rate=SAMPLE_RATE,
                                       return_tensors="np").input_values.astype(np.float32)
            feats.append(self.features.run(None, {"input_values": values})[0][0])
        lengths = [f.shape[0] for f in feats]
        longest = max(lengths)
        batch = np.zeros((len(feats), longest, feats[0].shape[1]), dtype=np.float32)
        mask = np.zeros((len(feats), longest), dtype=bool)
        for i, f in enumerate(feats):
            batch[i, : len(f)] = f
            mask[i, : len(f)] = True
        logits = self.encoder.run(None, {"features": batch, "mask": mask})[0]
        return [logits[i, :n] for i, n in enumerate(lengths)]
