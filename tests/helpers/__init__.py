"""What many tests share: the checkout's paths, running the CLI as a user would, the tools a
test needs, a free loopback port, the small and the dedup demo's settings and the Finnish CTC
vocabulary.
Fixtures (which pytest injects) stay in tests/conftest.py; everything else is imported from here."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from speechfm.synth import SynthConfig

SMALL_DEMO = SynthConfig(
    seed=3, channels=4, start="2021-01-31", days=2, hours_per_day=1, hour_seconds=25.0,
    labeled={"train": 8, "valid": 4, "test": 4},
)
# The dedup tests' demo: 4 channels x 3 days x two 30 s hours: every kind of repeat (idents,
# adverts across channels, two reruns: MP2 -> AAC and 48 -> 44.1 kHz) and both kinds of near-miss,
# in ~20 s of synthesis and ~10 s of prepare on 2 cores.
DEDUP_DEMO = SynthConfig(seed=5, channels=4, start="2021-01-31", days=3, hours_per_day=2,
                         hour_seconds=30.0, labeled={"train": 1, "valid": 1, "test": 1})


ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden"  # rendered job scripts the tests compare with


def run_speechfm(*args: str, timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    """Run the CLI of this checkout (not whatever is installed) as a user would."""
    env = {**os.environ, **kwargs.pop("env", {})}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "speechfm", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=env, **kwargs, check=False)


def require(tool: str) -> str:
    path = shutil.which(tool)
    assert path, f"{tool} is not installed: run 'make setup'"
    return path


def assert_lumi_network(script: str) -> None:
    """RCCL can reach Slingshot: host libfabric + CXI bound in, the aws-ofi-rccl plugin on the
    container's library path, every rank checks it first, one failed rank ends the step."""
    step = next(line for line in script.splitlines() if "-m speechfm.launch." in line)
    for bind in ("/var/spool/slurmd", "/opt/cray", "/usr/lib64/libcxi.so.1",
                 "/usr/lib64/libjansson.so.4"):
        assert f" -B {bind} " in step, bind
    assert ":/opt/aws-ofi-rccl " in step  # the plugin built with LUMI's EasyBuild recipe
    assert "--env LD_LIBRARY_PATH=/opt/aws-ofi-rccl/lib:/opt/cray/libfabric/" in step
    assert step.startswith("srun --kill-on-bad-exit=1 ")
    assert 'export SPEECHFM_REQUIRE_NET_PLUGIN="1"' in script
    assert 'export NCCL_SOCKET_IFNAME="hsn0,hsn1,hsn2,hsn3"' in script


FINNISH_VOCAB = ["<pad>", "<unk>", "|", *"abcdefghijklmnopqrstuvwxyzåäö"]




def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
