"""Archive preparation: stream-decode broadcast files, keep speech, pack FLAC segments into
uncompressed tar shards with an index, and write fairseq manifests from completed units only.
Entry points: `speechfm.prepare.pipeline.prepare`, `speechfm.prepare.verify.verify`,
`speechfm.prepare.convert.convert`."""
