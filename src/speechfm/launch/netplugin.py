"""Is RCCL's (NCCL's) network plugin there? A file check each rank makes before training starts.

Between nodes RCCL reaches LUMI's Slingshot network only through a network plugin (aws-ofi-rccl,
`librccl-net.so`, over the host's libfabric with its CXI provider). Without one it falls back to
TCP sockets silently and a 512-GPU job crawls. NCCL_DEBUG output cannot be parsed before the first
collective, so each rank looks for the library where the dynamic loader would find it; a site
with `require_net_plugin: true` makes a rank without it stop at once with a clear error.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

from speechfm.core.errors import SpeechfmError

log = logging.getLogger(__name__)

REQUIRE_ENV = "SPEECHFM_REQUIRE_NET_PLUGIN"
"""Set to 1 by the rendered sbatch script of a site with `require_net_plugin: true`."""
DEFAULT_NAMES = ("librccl-net.so", "libnccl-net.so")
SYSTEM_DIRS = ("/lib", "/usr/lib", "/lib64", "/usr/lib64", "/usr/lib/x86_64-linux-gnu")


def plugin_names(environ: Mapping[str, str]) -> list[str]:
    """The library names RCCL tries: NCCL_NET_PLUGIN's (`aws-ofi` -> `librccl-net-aws-ofi.so`, a
    file name or a path as it is), else `librccl-net.so` / `libnccl-net.so`; none for `none`."""
    value = environ.get("NCCL_NET_PLUGIN", "").strip()
    if not value:
        return list(DEFAULT_NAMES)
    if value.lower() == "none":
        return []
    if "/" in value or value.endswith(".so") or ".so." in value:
        return [value]
    return [f"librccl-net-{value}.so", f"libnccl-net-{value}.so"]


def find_plugin(environ: Mapping[str, str] | None = None) -> Path | None:
    """The network plugin library the loader would open (LD_LIBRARY_PATH, then the system
    library folders), or None."""
    environ = os.environ if environ is None else environ
    dirs = [d for d in environ.get("LD_LIBRARY_PATH", "").split(":") if d] + list(SYSTEM_DIRS)
    for name in plugin_names(environ):
        if "/" in name:
            candidates = [Path(name)]
        else:
            candidates = [Path(d) / name for d in dirs]
        for path in candidates:
            if path.is_file():  # follows links: a dangling one does not count
                return path
    return None


def check_plugin(rank: str, environ: Mapping[str, str] | None = None) -> Path | None:
    """Log whether this rank has a network plugin; raise SpeechfmError when the site requires one
    and it is missing (the job then fails before fairseq or the Trainer starts)."""
    environ = os.environ if environ is None else environ
    found = find_plugin(environ)
    if found is not None:
        log.info("rank %s: RCCL/NCCL network plugin %s", rank, found)
        return found
    names = ", ".join(plugin_names(environ)) or "none (NCCL_NET_PLUGIN=none)"
    where = environ.get("LD_LIBRARY_PATH", "") or "(empty)"
    if environ.get(REQUIRE_ENV, "") == "1":
        raise SpeechfmError(
            f"rank {rank}: no RCCL/NCCL network plugin ({names}) on LD_LIBRARY_PATH={where} or "
            "in the system library folders: collectives between nodes would run over TCP sockets",
            hint="bind the aws-ofi-rccl plugin and the host's libfabric into the container "
                 "(site train.container.binds/env, docs/pretrain.md), or set "
                 "require_net_plugin: false in the site file")
    log.info("rank %s: no RCCL/NCCL network plugin (%s) found; collectives between nodes would "
             "use TCP sockets", rank, names)
    return None
