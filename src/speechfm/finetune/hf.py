"""CTC fine-tuning with the transformers Trainer (the low-resource recipe of reference section 6).

Starts from a pre-trained wav2vec2 in transformers format (`speechfm export` of a fairseq
checkpoint) or, without one, from the preset's architecture at random. Frozen feature encoder,
length-grouped batches, WER/CER at each evaluation, best model by WER, MLflow metrics from
rank 0. Several processes: each is a rank started by `speechfm.launch.ranks` (the Trainer
picks up the rank environment that `speechfm.launch.rank` sets).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import Trainer, TrainerCallback, TrainingArguments, Wav2Vec2Config, Wav2Vec2ForCTC
from transformers.trainer_pt_utils import LengthGroupedSampler

from speechfm.core.audio import read_clip
from speechfm.core.ctc import greedy_text
from speechfm.core.curves import trainer_curve, write_curve
from speechfm.core.scoring import error_rates
from speechfm.core.text import make_processor
from speechfm.core.tracking import Run
from speechfm.finetune.data import VOCAB_JSON, Utterance, load_split

log = logging.getLogger(__name__)

MODEL_DIR = "model"
CHECKPOINT_DIR = "checkpoints"


class CTCDataset(torch.utils.data.Dataset):
    """Utterances of a prepared split as (audio, label ids); audio read when an item is asked."""

    def __init__(self, utts: list[Utterance], processor) -> None:
        self.utts = utts
        self.processor = processor

    def __len__(self) -> int:
        return len(self.utts)

    def lengths(self) -> list[int]:
        return [u.frames for u in self.utts]

    def __getitem__(self, i: int) -> dict[str, Any]:
        utt = self.utts[i]
        audio = read_clip(utt.path)
        values = self.processor.feature_extractor(audio, sampling_rate=16000).input_values[0]
        return {"input_values": values, "labels": self.processor.tokenizer(utt.text).input_ids}


class CTCCollator:
    """Pads audio (with an attention mask) and labels (with -100, ignored by the CTC loss)."""

    def __init__(self, processor) -> None:
        self.processor = processor

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = self.processor.feature_extractor.pad(
            [{"input_values": x["input_values"]} for x in items], padding=True,
            return_attention_mask=True, return_tensors="pt")
        labels = self.processor.tokenizer.pad(
            [{"input_ids": x["labels"]} for x in items], padding=True, return_tensors="pt")
        batch["labels"] = labels.input_ids.masked_fill(labels.attention_mask.ne(1), -100)
        return batch


class CTCTrainer(Trainer):
    """Trainer whose length-grouped sampler takes lengths from the manifest (no audio decoding)."""

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if self.args.train_sampling_strategy != "group_by_length":
            return super()._get_train_sampler(train_dataset)
        return LengthGroupedSampler(
            self.args.train_batch_size * self.args.gradient_accumulation_steps,
            lengths=dataset.lengths())


class MLflowMetrics(TrainerCallback):
    """Logs every Trainer log (loss, lr, grad norm, eval WER/CER) to the job's MLflow run."""

    def __init__(self, run: Run) -> None:
        self.run = run

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        values = {k.replace("eval_", "eval/"): float(v) for k, v in logs.items()
                  if isinstance(v, (int, float)) and math.isfinite(v)}
        if values:
            self.run.log_metrics(values, step=state.global_step)


def build_model(init: Path | None, preset: dict[str, Any], processor) -> Wav2Vec2ForCTC:
    """A CTC model with a fresh output layer for the tokenizer's vocabulary."""
    tokenizer = processor.tokenizer
    ctc = dict(preset["ctc"]) | {
        "vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id,
        "ctc_loss_reduction": "mean", "ctc_zero_infinity": True,
    }
    if init is None:
        log.info("no pre-trained model: training preset '%s' from random weights", preset["name"])
        return Wav2Vec2ForCTC(Wav2Vec2Config(**(dict(preset["model"]) | ctc)))
    log.info("starting from pre-trained model %s", init)
    return Wav2Vec2ForCTC.from_pretrained(str(init), **ctc)


def wants_normalized_input(init: Path | None) -> bool:
    """Whether the model expects zero-mean unit-variance audio (fairseq `normalize`)."""
    if init is None:
        return True
    from transformers import Wav2Vec2FeatureExtractor

    try:
        return bool(Wav2Vec2FeatureExtractor.from_pretrained(str(init)).do_normalize)
    except OSError:
        # No preprocessor_config.json: fairseq Base models are trained on raw audio, the
        # layer_norm (Large/X-Large) ones on normalised audio.
        config = Wav2Vec2Config.from_pretrained(str(init))
        return config.feat_extract_norm == "layer"


def train(data: Path, out: Path, preset: dict[str, Any], init: Path | None = None,
          overrides: dict[str, Any] | None = None, resume: bool = True,
          run: Run | None = None) -> Path:
    """Fine-tune on `data` (a prepared folder) and save model + processor to `out/model`;
    metrics go to `run` (an MLflow run of `speechfm.core.tracking`)."""
    processor = make_processor(data / VOCAB_JSON, do_normalize=wants_normalized_input(init))
    settings = dict(preset["transformers"]) | dict(overrides or {})
    freeze = settings.pop("freeze_feature_encoder", True)
    # WER stays at 1.0 for a long time in a small model's training while CER falls: such a
    # preset picks its best checkpoint by CER, or the first (blank-emitting) epoch would win.
    best_by = settings.pop("metric_for_best_model", "wer")
    model = build_model(init, preset, processor)
    if freeze:
        model.freeze_feature_encoder()
    train_set = CTCDataset(load_split(data, "train"), processor)
    valid_set = CTCDataset(load_split(data, "valid"), processor)
    args = TrainingArguments(
        output_dir=str(out / CHECKPOINT_DIR), report_to=[],
        eval_strategy="epoch", save_strategy="epoch", load_best_model_at_end=True,
        metric_for_best_model=best_by, greater_is_better=False, save_total_limit=2,
        train_sampling_strategy="group_by_length", use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0, remove_unused_columns=False, disable_tqdm=None,
        # DDP must look for skipped layers only when layerdrop can skip them
        ddp_find_unused_parameters=model.config.layerdrop > 0,
        **settings)

    def metrics(pred) -> dict[str, float]:
        tokenizer = processor.tokenizer
        hyps = [greedy_text(tokenizer, row) for row in pred.predictions]
        labels = np.where(pred.label_ids < 0, tokenizer.pad_token_id, pred.label_ids)
        refs = tokenizer.batch_decode(labels, group_tokens=False)
        return error_rates(refs, hyps)

    trainer = CTCTrainer(
        model=model, args=args, data_collator=CTCCollator(processor), train_dataset=train_set,
        eval_dataset=valid_set, processing_class=processor.feature_extractor,
        compute_metrics=metrics, callbacks=[MLflowMetrics(run or Run(None))],
        preprocess_logits_for_metrics=lambda logits, labels: logits.argmax(-1))
    last = _last_checkpoint(out / CHECKPOINT_DIR) if resume else None
    if last:
        log.info("resuming from %s", last)
    trainer.train(resume_from_checkpoint=str(last) if last else None)
    model_dir = out / MODEL_DIR
    if trainer.is_world_process_zero():
        trainer.save_model(str(model_dir))
        processor.save_pretrained(str(model_dir))
        write_curve(trainer_curve(trainer.state.log_history), out)
        log.info("best model (valid %s %.4f) saved to %s", best_by.upper(),
                 trainer.state.best_metric or math.nan, model_dir)
    return model_dir


def _last_checkpoint(folder: Path) -> Path | None:
    from transformers.trainer_utils import get_last_checkpoint

    return Path(found) if folder.is_dir() and (found := get_last_checkpoint(str(folder))) else None

