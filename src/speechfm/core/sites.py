"""Site profiles (`pipelines/sites/<name>.yaml`): where stages run, as validated data.

One typed schema for every site file and one loader. A site's `executor` is the one rule for
every verb: `local` runs the work on this machine, `slurm` submits it (training ranks as one
sbatch job, prepare's units as a Slurm array). Its `train:` section says how training ranks run
there, its `prepare:` section how prepare builds its units. An unknown or misspelt key is an
error naming the key and the file, never a silent default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from speechfm.core.errors import SpeechfmError

SITES_DIR = Path("pipelines") / "sites"
CHECKOUT_ROOT = Path(__file__).resolve().parents[3]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Container(_Strict):
    """The image every rank runs in (Apptainer/Singularity)."""

    image: str
    exec: list[str] = Field(default_factory=lambda: ["apptainer", "exec"])
    binds: list[str] = Field(default_factory=list)
    """Host paths mounted into the container (project, scratch, flash folders; host libraries)."""
    env: dict[str, str] = Field(default_factory=dict)
    """Variables set inside the container (`--env KEY=VALUE`), e.g. the LD_LIBRARY_PATH that
    finds the host's libfabric and the RCCL network plugin bound in."""


class TrainSite(_Strict):
    """How the ranks of a training job (pre-training, CTC fine-tuning) run on a Slurm site."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    gpus_per_node: int = 0
    """GPUs (GCDs on LUMI) per node; 0: CPU ranks."""
    tasks_per_node: int | None = None
    """CPU ranks per node when gpus_per_node is 0."""
    cpus_per_task: int = 1
    mem: str | None = None
    time: str | None = None
    signal: str | None = None
    """`--signal` for sbatch (e.g. USR1@600): checkpoint and stop before the time limit."""
    requeue: bool = False
    cpu_bind: str | None = None
    python: str | None = None
    """Python inside the container (default: this interpreter)."""
    container: Container | None = None
    env: dict[str, str] = Field(default_factory=dict)
    node_setup: list[str] = Field(default_factory=list)
    node_cleanup: list[str] = Field(default_factory=list)
    require_net_plugin: bool = False
    """Every rank checks for an RCCL/NCCL network plugin (e.g. aws-ofi-rccl) on its library path
    before training starts and fails at once without one, instead of training over TCP sockets."""


class PrepareSlurm(_Strict):
    """`speechfm prepare` as a Slurm array (through submitit)."""

    units_per_task: int = 1
    executor: dict[str, Any] = Field(default_factory=dict)
    """submitit SlurmExecutor parameters: partition, account, time, cpus_per_task, mem, ..."""


class PrepareSite(_Strict):
    """How `speechfm prepare` builds units: a local process pool or, on a Slurm site, an array."""

    workers: int = 1
    config: dict[str, Any] = Field(default_factory=dict)
    """Defaults for `PrepareConfig` fields (the command line wins)."""
    slurm: PrepareSlurm = Field(default_factory=PrepareSlurm)


class Site(_Strict):
    """A whole site file."""

    name: str = "default"
    path: Path | None = None
    executor: Literal["local", "slurm"] = "local"
    """Where every verb's work runs: here, or submitted to Slurm."""
    train: TrainSite = Field(default_factory=TrainSite)
    prepare: PrepareSite = Field(default_factory=PrepareSite)


def site_dirs() -> list[Path]:
    """Where site files are looked up: the current project, then this checkout."""
    return [Path.cwd() / SITES_DIR, CHECKOUT_ROOT / SITES_DIR]


def site_file(name: str | Path) -> Path:
    """The site file for a name (`lumi`) or a path to a YAML file."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml"):
        if path.is_file():
            return path
        raise SpeechfmError("site file not found", path=path)
    found = [p for p in (d / f"{name}.yaml" for d in site_dirs()) if p.is_file()]
    if not found:
        known = sorted({p.stem for d in site_dirs() if d.is_dir() for p in d.glob("*.yaml")})
        raise SpeechfmError(f"unknown site '{name}'", hint=f"known sites: {', '.join(known)}")
    return found[0]


def load_site(name: str | Path | None) -> Site:
    """The validated site `name` (a name in pipelines/sites or a YAML path); None: all defaults."""
    if name is None:
        return Site()
    import yaml

    path = site_file(name)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise SpeechfmError(f"cannot read site file: {exc}", path=path) from None
    if not isinstance(data, dict):
        raise SpeechfmError("a site file must be a mapping with executor:, train:, prepare: keys",
                            path=path)
    try:
        return Site(name=path.stem, path=path, **data)
    except ValidationError as exc:
        raise SpeechfmError(f"invalid site file: {_first_problem(exc)}", path=path,
                            hint="see pipelines/sites/local.yaml and docs/pretrain.md for the "
                                 "keys a site may set") from None
    except TypeError as exc:  # e.g. a top-level key that collides with name/path
        raise SpeechfmError(f"invalid site file: {exc}", path=path) from None


def _first_problem(exc: ValidationError) -> str:
    """`train.gpu_per_node: unknown key` style text for the first validation error."""
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        return f"unknown key '{where}'"
    return f"'{where}': {err['msg']}"
