"""CTC inference and decoding, the one place evaluate, fine-tuning metrics and the service use:
loading a CTC model folder, batched logits, greedy and beam-search (n-gram) decoding.

Batched inference gives every clip exactly the logits it gets alone.

A padded batch through `Wav2Vec2ForCTC` is not the same as one clip at a time: the feature
encoder's group norm (Base and the `tiny` preset) takes its statistics over the padding too, and
each clip's audio normalisation must cover that clip only. Here each clip is normalised and runs
through the convolutional feature encoder alone (convolutions gain nothing from batching on a CPU
and waste work on padding), and only the frame sequences are padded: the projection is per frame,
the encoder zeroes and masks padded frames (its positional convolution then sees the same zeros as
its own edge padding), and the head is per frame. So the transcript of a clip never depends on
which other requests shared its batch, and `speechfm evaluate` and `speechfm serve` agree.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence

from speechfm.core.constants import SAMPLE_RATE
from speechfm.core.errors import SpeechfmError

BATCH_SECONDS = 120.0
"""Audio per inference batch in `transcribe` (clips sorted by length, so padding stays small)."""


def load_ctc_model(model_dir: Path, safetensors_only: bool = False):
    """(model in eval mode, processor) from a folder written by `finetune` or `export`;
    `safetensors_only`: never unpickle weights (the service)."""
    from transformers import Wav2Vec2ForCTC, Wav2Vec2Processor

    if not (model_dir / "config.json").exists():
        raise SpeechfmError("not a model folder (no config.json)", path=model_dir,
                            hint="pass the model/ folder written by 'speechfm finetune'")
    try:
        processor = Wav2Vec2Processor.from_pretrained(str(model_dir), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise SpeechfmError(f"no CTC processor in the model folder: {exc}", path=model_dir) from exc
    extra = {"use_safetensors": True} if safetensors_only else {}
    model = Wav2Vec2ForCTC.from_pretrained(str(model_dir), local_files_only=True, **extra)
    return model.eval(), processor


@torch.inference_mode()
def ctc_logits(model, feature_extractor, audios: list[np.ndarray]) -> list[torch.Tensor]:
    """Logits [frames_i, vocab] of each 16 kHz clip of `audios` from one padded encoder pass."""
    w2v = model.wav2vec2
    dtype = next(p for p in model.parameters() if p.is_floating_point()).dtype
    feats = []
    for audio in audios:
        values = feature_extractor(audio, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_values
        feats.append(w2v.feature_extractor(values.to(dtype)).transpose(1, 2)[0])  # [T_i, C]
    lengths = torch.tensor([f.shape[0] for f in feats])
    hidden, _ = w2v.feature_projection(pad_sequence(feats, batch_first=True))
    mask = None
    if int(lengths.min()) < hidden.shape[1]:
        mask = torch.arange(hidden.shape[1])[None, :] < lengths[:, None]
    hidden = w2v.encoder(hidden, attention_mask=mask).last_hidden_state
    if w2v.adapter is not None:
        hidden = w2v.adapter(hidden)
    logits = model.lm_head(hidden)
    return [logits[i, : int(n)] for i, n in enumerate(lengths)]



def quantize_int8(model):
    """Dynamic int8 quantization of every `Linear` (inference only, for CPUs without bf16 units).

    The convolutional feature encoder stays float: quantizing its convolutions too (as unfold +
    `Linear`) was measured on the demo's fine-tuned `tiny` model to raise test CER from 6.0% to
    19.2% (per-tensor 8-bit activations lose the early layers' range), while the `Linear` layers
    alone cost nothing measurable (6.03% -> 6.05%)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's deprecation notice for eager quantization
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def greedy_text(tokenizer, ids) -> str:
    """Greedy CTC transcript of one utterance's frame ids (argmax per frame; negative ids, e.g.
    -100 padding, count as blanks): repeats merged, blanks removed, `|` as spaces."""
    ids = [tokenizer.pad_token_id if int(i) < 0 else int(i) for i in ids]
    return tokenizer.decode(ids)


def greedy_texts(tokenizer, logits: list[torch.Tensor]) -> list[str]:
    """Greedy transcripts of each utterance's [frames, vocab] logits."""
    return [greedy_text(tokenizer, lg.argmax(-1).tolist()) for lg in logits]


def transcribe(model, processor, audio: list[np.ndarray], beam=None) -> list[str]:
    """CTC transcripts of 16 kHz waveforms, batched by length (each exactly as if alone, see
    `ctc_logits`): greedy, or with `beam` (a `BeamDecoder`) over each utterance's log-probs."""
    order = sorted(range(len(audio)), key=lambda i: len(audio[i]))
    out: list[str] = [""] * len(audio)
    batch: list[int] = []

    def flush() -> None:
        logits = ctc_logits(model, processor.feature_extractor, [audio[i] for i in batch])
        if beam is None:
            texts = greedy_texts(processor.tokenizer, logits)
        else:
            texts = [beam(torch.log_softmax(lg.float(), dim=-1).numpy()) for lg in logits]
        for i, text in zip(batch, texts):
            out[i] = text
        batch.clear()

    for i in order:
        if batch and (len(batch) + 1) * len(audio[i]) > BATCH_SECONDS * SAMPLE_RATE:
            flush()
        batch.append(i)
    if batch:
        flush()
    return out


class BeamDecoder:
    """CTC prefix beam search with a KenLM-loaded n-gram (pyctcdecode) for one processor's vocabulary."""

    def __init__(self, processor, lm_path: Path, alpha: float = 0.5, beta: float = 1.0,
                 beam_width: int = 50) -> None:
        try:
            import kenlm  # noqa: F401  (pyctcdecode silently decodes without an LM if it's missing)
            from pyctcdecode import build_ctcdecoder
        except ImportError as exc:
            raise SpeechfmError(f"beam search needs pyctcdecode and kenlm: {exc}",
                                hint="run 'make setup' (it installs both)") from exc
        if not lm_path.is_file():
            raise SpeechfmError("language model not found", path=lm_path,
                                hint="build one with 'speechfm lm'")
        tokenizer = processor.tokenizer
        vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
        labels = []
        for token, index in vocab:
            if index == tokenizer.pad_token_id:
                labels.append("")  # the CTC blank
            elif token == tokenizer.word_delimiter_token:
                labels.append(" ")
            elif token == tokenizer.unk_token:
                labels.append("⁇")
            else:
                labels.append(token)
        self.decoder = build_ctcdecoder(labels, kenlm_model_path=str(lm_path), alpha=alpha,
                                        beta=beta)
        self.beam_width = beam_width

    def __call__(self, log_probs: np.ndarray) -> str:
        """Best transcript of one utterance's (frames x vocabulary) log-probabilities."""
        text = self.decoder.decode(log_probs, beam_width=self.beam_width)
        return " ".join(text.replace("⁇", "").split())
