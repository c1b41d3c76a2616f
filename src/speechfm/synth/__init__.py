"""`speechfm synth`: the built-in demo broadcast archive and labeled corpus, deterministic per seed."""

from __future__ import annotations

import json
import logging
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path

from speechfm.core.errors import SpeechfmError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SynthConfig:
    """Everything that determines the demo data; the same config gives the same bytes."""

    seed: int = 0
    channels: int = 4
    start: str = "2021-01-31"  # the demo spans a month boundary on purpose
    days: int = 2
    hours_per_day: int = 2
    first_hour: int = 6
    hour_seconds: float = 90.0
    labeled: dict = field(default_factory=lambda: {"train": 600, "valid": 60, "test": 60})


def synthesize(out: Path, config: SynthConfig, workers: int = 2) -> dict:
    """Write the archive under `out/archive` and the labeled corpus under `out/labeled`.

    Re-running with the same config keeps what is already complete; a different config into the
    same folder is refused rather than mixed.
    """
    # imported here: scipy and soundfile would slow every `speechfm` start (the CLI imports
    # this package for `synth --help`)
    from tqdm import tqdm

    from speechfm.synth.archive import channels_for, plan_hours, write_hour
    from speechfm.synth.labeled import SPLITS, write_tsv, write_utterance
    from speechfm.synth.repeats import Library
    from speechfm.synth.text import split_sentences

    out.mkdir(parents=True, exist_ok=True)
    stamp = out / "synth.json"
    wanted = asdict(config)
    if stamp.exists():
        previous = json.loads(stamp.read_text())
        if previous != wanted and not previous.get("skipped"):
            raise SpeechfmError(
                "this folder holds a demo made with other settings", stamp,
                hint="choose another --out or delete the folder",
            )
    stamp.write_text(json.dumps(wanted, indent=1))

    n = config.labeled
    pools = split_sentences(config.seed, n["train"], n["valid"], n["test"])
    channels = channels_for(config.channels)
    specs = plan_hours(channels, date.fromisoformat(config.start), config.days,
                       config.hours_per_day, config.first_hour, config.hour_seconds, config.seed)
    library = Library.build(config.seed, channels, pools.archive)
    archive, labeled = out / "archive", out / "labeled"
    with ProcessPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = [pool.submit(write_hour, s, archive, pools.archive, library) for s in specs]
        for fut in tqdm(futures, desc="broadcast hours", unit="file", disable=None):
            fut.result()
        counts = {}
        for split in SPLITS:
            sentences = getattr(pools, split)
            futures = [pool.submit(write_utterance, labeled, split, i, text, config.seed)
                       for i, text in enumerate(sentences)]
            rows = [f.result() for f in tqdm(futures, desc=f"labeled {split}", unit="utt",
                                             disable=None)]
            write_tsv(labeled, split, rows)
            counts[split] = len(rows)
    summary = {"archive": str(archive), "hours_files": len(specs),
               "archive_seconds": len(specs) * config.hour_seconds,
               "labeled": str(labeled), "utterances": counts}
    log.info("demo written to %s: %d broadcast files (%.1f min), labeled %s", out, len(specs),
             summary["archive_seconds"] / 60, counts)
    return summary
