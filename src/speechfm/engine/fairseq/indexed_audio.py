"""fairseq tasks that read audio through the memory-mapped segment index (`speechfm.core.segment_index`)
instead of holding every manifest path in each process: `speechfm_audio_pretraining` and
`speechfm_audio_finetuning`, the `audio_pretraining` / `audio_finetuning` tasks with
`IndexedAudioDataset`. They take the same settings and return the same samples.

Registered when this module is imported; fairseq imports it through the user dir
`plugin/speechfm_fairseq` (`common.user_dir`), which the launch layer sets for these tasks, so
plain `fairseq-hydra-train` with that user dir runs them too.
"""

from __future__ import annotations

import io
import logging
import os
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fairseq.data import SubsampleDataset
from fairseq.data.audio.audio_utils import is_sf_audio_data
from fairseq.data.audio.raw_audio_dataset import RawAudioDataset
from fairseq.tasks import register_task
from fairseq.tasks.audio_finetuning import AudioFinetuningConfig, AudioFinetuningTask
from fairseq.tasks.audio_pretraining import AudioPretrainingConfig, AudioPretrainingTask

from speechfm.core.errors import SpeechfmError
from speechfm.core.segment_index import WHOLE_FILE, open_index
from speechfm.engine.fairseq.userdir import INDEXED_TASKS

log = logging.getLogger(__name__)

PRETRAINING_TASK, FINETUNING_TASK = INDEXED_TASKS
OPEN_FILES = 64
"""Shard files a process keeps open (a training epoch reads them in random order)."""
READ_RETRIES = 3


class IndexedAudioDataset(RawAudioDataset):
    """fairseq's `FileAudioDataset` over a segment index: the same rows (those shorter than
    `min_sample_size` skipped, listed in `skipped_indices`), sizes and samples, but the columns
    are shared read-only maps, and members are read with `os.pread` from shards kept open."""

    def __init__(self, manifest_path: str, sample_rate: int, max_sample_size: int | None = None,
                 min_sample_size: int = 0, shuffle: bool = True, pad: bool = False,
                 normalize: bool = False, num_buckets: int = 0, compute_mask: bool = False,
                 build_missing: bool = True, **kwargs: Any):
        kwargs.pop("text_compression_level", None)  # no path strings to compress
        if compute_mask:
            raise SpeechfmError("precomputed masks (task.precompute_mask_config) are not "
                                "supported by the segment index dataset",
                                hint="use task._name=audio_pretraining")
        super().__init__(sample_rate=sample_rate, max_sample_size=max_sample_size,
                         min_sample_size=min_sample_size, shuffle=shuffle, pad=pad,
                         normalize=normalize, **kwargs)
        self.manifest = Path(manifest_path)
        self.build_missing = build_missing
        self._open()
        frames = self.index.frames
        self.skipped_indices: set[int] = set()
        self._rows: np.ndarray | None = None  # dataset index -> manifest row, when rows skip
        if min_sample_size is not None and len(frames) and int(frames.min()) < min_sample_size:
            short = frames < min_sample_size
            self.skipped_indices = set(np.flatnonzero(short).tolist())
            self._rows = np.flatnonzero(~short)
            self.sizes = frames[self._rows]
        else:
            self.sizes = frames  # the shared map itself: no copy per rank
        log.info("loaded %d, skipped %d samples (segment index %s)", len(self.sizes),
                 len(self.skipped_indices), self.index.folder)
        self.set_bucket_info(num_buckets)

    def _open(self) -> None:
        self.index = open_index(self.manifest, build_missing=self.build_missing)
        self._files: OrderedDict[int, int] = OrderedDict()
        self._pid = os.getpid()

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (spawned loader workers) without the maps: each process maps the files."""
        state = dict(self.__dict__)
        for key in ("index", "_files", "_pid"):
            state.pop(key)
        if self._rows is None:
            state.pop("sizes")
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._open()
        if self._rows is None:
            self.sizes = self.index.frames

    def _process_started(self) -> None:
        """First item in a new process (a loader worker): it opens its own files. Its decoding
        runs on one thread: torch's DataLoader sets one per worker, libsndfile uses no pool."""
        self._files = OrderedDict()
        self._pid = os.getpid()

    def _fd(self, path_id: int, path: str) -> int:
        fd = self._files.pop(path_id, None)
        if fd is None:
            fd = os.open(os.path.join(self.index.root, path), os.O_RDONLY)
            if len(self._files) >= OPEN_FILES:
                os.close(self._files.popitem(last=False)[1])
        self._files[path_id] = fd
        return fd

    def where(self, row: int) -> str:
        """`path` or `shard:offset:size` of a row, as in the manifest but with the root."""
        path, offset, size = self.index.entry(row)
        full = os.path.join(self.index.root, path)
        return full if size == WHOLE_FILE else f"{full}:{offset}:{size}"

    def _read(self, row: int) -> Any:
        """What soundfile reads for a row: a file path, or the tar member's bytes."""
        path_id = self.index.path_id(row)
        path = self.index.path(path_id)
        offset, size = int(self.index.offsets[row]), int(self.index.sizes[row])
        if size == WHOLE_FILE:
            return os.path.join(self.index.root, path)
        data = os.pread(self._fd(path_id, path), size, offset)
        if len(data) != size or not is_sf_audio_data(data):
            raise SpeechfmError("not a complete audio member (WAV, FLAC or Ogg) at this offset",
                                path=self.where(row), hint="check it with 'speechfm verify'")
        return io.BytesIO(data)

    def __getitem__(self, index: int) -> dict[str, Any]:
        import soundfile as sf

        if self._pid != os.getpid():
            self._process_started()
        row = int(index if self._rows is None else self._rows[index])
        for attempt in range(READ_RETRIES):  # shared file systems fail now and then
            try:
                wav, rate = sf.read(self._read(row), dtype="float32")
                break
            except (OSError, sf.LibsndfileError, RuntimeError) as exc:
                error = exc
                log.warning("failed to read %s: %s; retrying in %d s", self.where(row), exc,
                            attempt)
                time.sleep(attempt)
        else:
            raise SpeechfmError(f"cannot read audio: {error}", path=self.where(row))
        feats = self.postprocess(torch.from_numpy(wav).float(), rate)
        return {"id": index, "source": feats}

    def num_tokens_vec(self, indices: np.ndarray) -> np.ndarray:
        """`num_tokens` of many items at once (fairseq batches 10^8 rows without a Python loop)."""
        sizes = self.sizes[indices]
        return sizes if self.pad else np.minimum(sizes, self.max_sample_size)


def _load(task: AudioPretrainingTask, split: str, task_cfg: Any) -> None:
    """What `AudioPretrainingTask.load_dataset` does for a plain manifest, with the index."""
    task_cfg = task_cfg or task.cfg
    if getattr(task_cfg, "binarized_dataset", False) or task_cfg.multi_corpus_keys is not None:
        raise SpeechfmError("binarized_dataset and multi_corpus_keys are not supported by the "
                            "segment index dataset", hint="use the audio_pretraining task")
    compute_mask = getattr(task_cfg, "precompute_mask_config", None) is not None
    task.datasets[split] = IndexedAudioDataset(
        manifest_path=os.path.join(task.cfg.data, f"{split}.tsv"),
        sample_rate=task_cfg.get("sample_rate", task.cfg.sample_rate),
        max_sample_size=task.cfg.max_sample_size,
        min_sample_size=task.cfg.min_sample_size,
        pad=task_cfg.labels is not None or task_cfg.enable_padding,
        normalize=task_cfg.normalize,
        num_buckets=task.cfg.num_batch_buckets or int(task.cfg.tpu),
        compute_mask=compute_mask,
    )
    if getattr(task_cfg, "subsample", 1) < 1:
        task.datasets[split] = SubsampleDataset(task.datasets[split], task_cfg.subsample,
                                                shuffle=True, seed=task_cfg.seed)


# The settings are those of fairseq's tasks, the very dataclasses: a config built from them
# (as `finetune`'s scratch encoder does) merges into these tasks as into fairseq's.
@register_task(PRETRAINING_TASK, dataclass=AudioPretrainingConfig)
class IndexedAudioPretrainingTask(AudioPretrainingTask):
    """`audio_pretraining` reading its splits through their segment indexes."""

    def load_dataset(self, split: str, task_cfg: Any = None, **kwargs: Any) -> None:
        _load(self, split, task_cfg)


@register_task(FINETUNING_TASK, dataclass=AudioFinetuningConfig)
class IndexedAudioFinetuningTask(AudioFinetuningTask, IndexedAudioPretrainingTask):
    """`audio_finetuning` (CTC labels, WER) whose audio comes from the segment indexes: its
    `load_dataset` calls the next class's, here `IndexedAudioPretrainingTask`'s, then adds labels."""

