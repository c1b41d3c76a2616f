"""The shared core every stage builds on; it imports no stage.

constants, errors   sample rate, segment limits, file naming; user-facing errors
segment, manifest   a segment in a tar shard (the shard index) and fairseq manifests of them
segment_index       a manifest's entries as memory-mapped columns, for training at scale
fingerprint         a segment's audio fingerprint and the shard sidecar prepare writes for dedup
audio, vad          decoding with ffmpeg, reading clips; voice activity detection and cutting
text, labeled       transcript normalisation + CTC vocabulary; the one labeled-table reader
ctc, onnx           batched CTC inference, greedy/beam decoding, timestamps; ONNX graphs of it
scoring, truth      WER/CER; the demo's ground truth beside an archive's files (*.truth.json)
checkpoint          fairseq wav2vec 2.0 checkpoints -> transformers folders
presets, sites      model presets and site profiles, as validated data
tracking, curves    MLflow runs (or none); training curves for DVC
cliargs             option spellings every verb shares (--site, --workers, --set, --model, ...)
"""
