"""Backend-neutral fine-tuning knobs and how each backend honours them.

`params.yaml` (`finetune.*`), the CLI (`--epochs`, `--updates`, `--learning-rate`,
`--freeze-feature-encoder`, `--gpus`) and the docs use these names; each backend maps them to its
own settings here, and a value a backend cannot honour is an error naming the knob, never a
silent approximation. `--set KEY=VALUE` still reaches the backend directly; setting the same
thing both ways is an error.

| knob | transformers | fairseq |
|---|---|---|
| epochs | num_train_epochs | optimization.max_epoch (whole epochs, a schedule not laid out over updates) |
| updates | max_steps | optimization.max_update |
| learning_rate | learning_rate | optimization.lr |
| freeze_feature_encoder | freeze_feature_encoder | model.feature_grad_mult 0.0 / 1.0 |
| gpus | ranks (`speechfm.launch.ranks`: processes here or srun tasks) | distributed_world_size, update_freq |
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from speechfm.core.errors import SpeechfmError

TRANSFORMERS_KEYS = {"epochs": "num_train_epochs", "updates": "max_steps",
                     "learning_rate": "learning_rate",
                     "freeze_feature_encoder": "freeze_feature_encoder"}
FAIRSEQ_KEYS = {"epochs": "optimization.max_epoch", "updates": "optimization.max_update",
                "learning_rate": "optimization.lr",
                "freeze_feature_encoder": "model.feature_grad_mult"}
FAIRSEQ_SCHEDULES_BY_EPOCH = ("fixed", "inverse_sqrt", "reduce_lr_on_plateau")
"""fairseq learning-rate schedules that do not need the run's length in updates."""
LENGTH_KEYS = ("num_train_epochs", "max_steps")
"""transformers settings that only set how long a run is (a resume may change them)."""
EXECUTION_KEYS = ("logging_steps", "per_device_eval_batch_size", "dataloader_num_workers",
                  "disable_tqdm")
"""transformers settings of how a run is watched, not what it trains (a resume may change them)."""


def _name(knob: str) -> str:
    return f"'{knob}' (--{knob.replace('_', '-')}, finetune.{knob} in params.yaml)"


@dataclass(frozen=True)
class Knobs:
    """What a fine-tuning run's length, learning rate, freezing and ranks are; 0 (None for the
    freezing): the preset's own setting."""

    epochs: float = 0
    updates: int = 0
    learning_rate: float = 0
    freeze_feature_encoder: bool | None = None
    gpus: int = 1

    def __post_init__(self) -> None:
        if self.epochs < 0:
            raise SpeechfmError(f"{_name('epochs')} must be 0 (not set) or more, not {self.epochs}")
        if self.updates < 0:
            raise SpeechfmError(f"{_name('updates')} must be 0 (not set) or more, "
                                f"not {self.updates}")
        if self.epochs and self.updates:
            raise SpeechfmError(f"both {_name('epochs')} and {_name('updates')} are set",
                                hint="give the run's length one way; 0 leaves a knob unset")
        if not self.learning_rate >= 0:
            raise SpeechfmError(f"{_name('learning_rate')} must be 0 (not set) or positive, "
                                f"not {self.learning_rate}")
        if self.gpus < 1:
            raise SpeechfmError(f"{_name('gpus')} must be at least 1, not {self.gpus}")

    @classmethod
    def from_args(cls, args: Any) -> Knobs:
        """The knobs of parsed arguments or of a `FinetuneConfig` (the same attribute names)."""
        return cls(epochs=args.epochs or 0, updates=args.updates or 0,
                   learning_rate=args.learning_rate or 0,
                   freeze_feature_encoder=args.freeze_feature_encoder, gpus=args.gpus)

    def _given(self) -> dict[str, Any]:
        values = {"epochs": self.epochs or None, "updates": self.updates or None,
                  "learning_rate": self.learning_rate or None,
                  "freeze_feature_encoder": self.freeze_feature_encoder}
        return {k: v for k, v in values.items() if v is not None}

    @staticmethod
    def _no_conflict(knob: str, key: str, overrides: dict[str, Any]) -> None:
        if key in overrides:
            raise SpeechfmError(f"{_name(knob)} and --set {key}={overrides[key]} both set it",
                                hint="use one of the two")

    def transformers(self, overrides: dict[str, Any]) -> dict[str, Any]:
        """The transformers settings (TrainingArguments + freeze_feature_encoder) these knobs give,
        merged with the `--set` overrides."""
        out = dict(overrides)
        for knob, value in self._given().items():
            key = TRANSFORMERS_KEYS[knob]
            self._no_conflict(knob, key, overrides)
            if knob == "epochs":
                self._no_conflict(knob, "max_steps", overrides)
            out[key] = int(value) if knob == "updates" else value
        return out

    def fairseq(self, overrides: dict[str, Any], preset: dict[str, Any]) -> dict[str, Any]:
        """fairseq `section.key` overrides these knobs give, merged with the `--set` ones;
        `preset` is the fine-tuning preset (its schedule decides whether epochs can be honoured)."""
        out = dict(overrides)
        for knob, value in self._given().items():
            key = FAIRSEQ_KEYS[knob]
            self._no_conflict(knob, key, overrides)
            if knob == "epochs":
                schedule = (preset.get("fairseq", {}).get("lr_scheduler") or {}).get("_name")
                schedule = overrides.get("lr_scheduler._name", schedule)
                if schedule not in FAIRSEQ_SCHEDULES_BY_EPOCH:
                    raise SpeechfmError(
                        f"{_name('epochs')} = {value} cannot be honoured by the fairseq backend: "
                        f"its '{schedule}' learning-rate schedule is laid out over updates",
                        hint="set finetune.updates (--updates) instead, 0 for epochs")
                if value != int(value):
                    raise SpeechfmError(f"{_name('epochs')} = {value}: the fairseq backend "
                                        "counts whole epochs")
                self._no_conflict(knob, "optimization.max_update", overrides)
                out[key] = int(value)
                out["optimization.max_update"] = 0  # no limit: the epochs end the run
            elif knob == "updates":
                out[key] = int(value)
            elif knob == "learning_rate":
                out[key] = [value]
            else:
                out[key] = 0.0 if value else 1.0
        return out
