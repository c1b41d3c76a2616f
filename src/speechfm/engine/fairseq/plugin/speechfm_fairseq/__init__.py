"""fairseq user dir (`common.user_dir=.../speechfm_fairseq`): registers speechfm's fairseq tasks.

fairseq imports a user dir by its folder name; the tasks live in `speechfm.engine.fairseq.indexed_audio`,
so importing them here and from speechfm's own code registers them once per process."""

import speechfm.engine.fairseq.indexed_audio  # noqa: F401
