"""Constants every stage shares: one place for the sample rate, segment limits and file naming."""

SAMPLE_RATE = 16_000
"""Sample rate of every model input, shard member and manifest frame count (Hz)."""

MIN_SEGMENT_SECONDS = 2.0
MAX_SEGMENT_SECONDS = 30.0

ARCHIVE_SUFFIXES = (".ts",)
"""Extensions of broadcast hours in an archive; `prepare` also accepts any file ffmpeg reads."""

GROUND_TRUTH_SUFFIX = ".truth.json"
"""Ground-truth file written beside each synthetic broadcast hour."""

SHARD_SUFFIX = ".tar"
INDEX_SUFFIX = ".index.jsonl"

SHARDS_DIR = "shards"
"""Folder of a prepared dataset holding `<channel>/<unit>.tar` shards and their sidecars."""

DONE_SUFFIX = ".done.json"
"""A unit's completion record, `shards/<channel>/<unit>.done.json`, written after its shards."""
