"""One rank: `python -m speechfm.launch.rank OUT/ranks.json` (what `launch.ranks` starts, as a
process here or as an srun task).

Sets RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT (from Slurm's
variables under srun, what torchrun would set), makes the network-plugin check, then calls the
description's entry point `module:function(**args)` in this process; its return is the exit
status.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import sys
from pathlib import Path

from speechfm.core.errors import SpeechfmError
from speechfm.launch.netplugin import check_plugin
from speechfm.launch.ranks import read_ranks

log = logging.getLogger("speechfm.launch.rank")


def expand_hostlist(hostlist: str) -> list[str]:
    """Expand a Slurm host list (`nid[005001-005003,005010],login1`) without `scontrol`."""
    hosts: list[str] = []
    for item in re.findall(r"[^,\[]+(?:\[[^\]]*\][^,\[]*)*", hostlist):
        match = re.match(r"^([^\[]*)\[([^\]]*)\](.*)$", item)
        if not match:
            hosts.append(item)
            continue
        prefix, ranges, rest = match.groups()
        for part in ranges.split(","):
            lo, _, hi = part.partition("-")
            width = len(lo)
            for number in range(int(lo), int(hi or lo) + 1):
                hosts.extend(f"{prefix}{number:0{width}d}{tail}" for tail in expand_hostlist(rest)
                             or [""])
    return hosts


def rank_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    """RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT for `env://`, from Slurm if needed."""
    env = dict(os.environ if environ is None else environ)
    if "RANK" in env or "SLURM_PROCID" not in env:
        env.setdefault("RANK", "0")
        env.setdefault("WORLD_SIZE", "1")
        env.setdefault("LOCAL_RANK", env["RANK"])
    else:
        env["RANK"] = env["SLURM_PROCID"]
        env["WORLD_SIZE"] = env.get("SLURM_NTASKS", "1")
        env["LOCAL_RANK"] = env.get("SLURM_LOCALID", "0")
        nodes = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST", "localhost")
        env.setdefault("MASTER_ADDR", expand_hostlist(nodes)[0])
        env.setdefault("MASTER_PORT", str(20000 + int(env.get("SLURM_JOB_ID", "0")) % 20000))
    return {k: env[k] for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
            if k in env}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m speechfm.launch.rank OUT/ranks.json", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s | %(levelname)s | %(name)s | %(message)s")
    try:
        job = read_ranks(Path(argv[0]))
        os.environ.update(rank_environment())
        os.environ.setdefault("LOCAL_WORLD_SIZE", os.environ.get("SLURM_NTASKS_PER_NODE", "1"))
        if int(os.environ["WORLD_SIZE"]) != job.world_size:
            raise SpeechfmError(f"this job needs {job.world_size} ranks but "
                                f"{os.environ['WORLD_SIZE']} were started", path=job.path)
        check_plugin(os.environ["RANK"])
        module, _, function = job.entry.partition(":")
        entry = getattr(importlib.import_module(module), function)
    except SpeechfmError as exc:
        log.error("%s", exc)
        return 2
    return int(entry(**job.args) or 0)


if __name__ == "__main__":
    sys.exit(main())
