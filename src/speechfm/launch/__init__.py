"""Starting ranks, the same way for every verb: `ranks(Ranks(...), site)` runs N ranks of an
explicit entry point as processes here or as one sbatch job, as the site says (`ranks.py`,
`slurm.py`); each rank is `python -m speechfm.launch.rank RANKS.json` (`rank.py`: environment,
network-plugin check, then the entry point). `array.py` runs a function over groups of items as
a Slurm array (prepare's units). `resume.py` decides whether a run continues its checkpoints.
"""

from __future__ import annotations

from speechfm.launch.ranks import Outcome, Ranks, ranks

__all__ = ["Outcome", "Ranks", "ranks"]
