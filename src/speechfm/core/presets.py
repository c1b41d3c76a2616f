"""Model presets as data (`speechfm/presets/*.yaml`): one file per pre-training size
(`tiny`, `base`, `large`, `xlarge`) and one per fine-tuning size (`finetune_<size>.yaml`).
A user's own YAML file of the same form works wherever a name does."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from speechfm.core.errors import SpeechfmError

PRESET_DIR = Path(__file__).resolve().parents[1] / "presets"
PRETRAIN_PRESETS = ("tiny", "base", "large", "xlarge")
FINETUNE_PREFIX = "finetune_"
FINETUNE_SECTIONS = ("model", "ctc", "transformers", "fairseq")


def _yaml(text: str, source: str | Path) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpeechfmError(f"not valid YAML: {exc}", path=source) from None


def load_pretrain(name: str) -> dict[str, Any]:
    """A pre-training preset by name (`base`) or path to a YAML file of the same form."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.exists():
        preset = _yaml(path.read_text(encoding="utf-8"), path)
    elif name in PRETRAIN_PRESETS:
        text = (resources.files("speechfm") / "presets" / f"{name}.yaml").read_text("utf-8")
        preset = _yaml(text, name)
    else:
        raise SpeechfmError(f"unknown preset '{name}'",
                            hint=f"use one of {', '.join(PRETRAIN_PRESETS)} or a YAML file")
    if not isinstance(preset, dict) or "fairseq" not in preset:
        raise SpeechfmError("a preset needs a 'fairseq:' section", path=name)
    return preset


def finetune_presets() -> list[str]:
    """Names of the shipped fine-tuning presets."""
    return sorted(p.stem[len(FINETUNE_PREFIX):] for p in PRESET_DIR.glob(f"{FINETUNE_PREFIX}*.yaml"))


def load_finetune(name_or_path: str) -> dict[str, Any]:
    """A fine-tuning preset by name (`tiny`, `base`, ...) or from a YAML file the user wrote."""
    path = Path(name_or_path)
    if not path.suffix:
        path = PRESET_DIR / f"{FINETUNE_PREFIX}{name_or_path}.yaml"
    if not path.exists():
        raise SpeechfmError("no such fine-tuning preset", path=path,
                            hint=f"shipped presets: {', '.join(finetune_presets())}")
    preset = _yaml(path.read_text(encoding="utf-8"), path)
    if not isinstance(preset, dict):
        raise SpeechfmError("a fine-tuning preset must be a mapping", path=path)
    for section in FINETUNE_SECTIONS:
        if section not in preset:
            raise SpeechfmError(f"preset has no '{section}' section", path=path)
    preset.setdefault("name", path.stem.removeprefix(FINETUNE_PREFIX))
    return preset
