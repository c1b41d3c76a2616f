"""The layering of docs/architecture.md, checked on the source: shared core -> engines ->
stages -> api/CLI.

Every import (top-level or inside a function) of every module is read with `ast`; the core never
imports an engine, a stage or the service; an engine (`speechfm.engine.<name>`, e.g. fairseq)
imports only the core and itself; a stage imports only the core, the engines and itself; nothing
below the service imports it.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers import ROOT

CORE = ("speechfm.core", "speechfm.launch")
STAGES = ("synth", "prepare", "pretrain", "export", "finetune", "evaluate", "interpret",
          "register", "dedup")
ENGINES = "speechfm.engine"
TOP = ("speechfm.cli", "speechfm.__main__", "speechfm.serve", "speechfm_api")


def module_name(path: Path) -> str:
    """The importable name of a source file (`api/` is installed as `speechfm_api`)."""
    if path.is_relative_to(ROOT / "src"):
        parts = list(path.relative_to(ROOT / "src").with_suffix("").parts)
    else:
        parts = ["speechfm_api", *path.relative_to(ROOT / "api").with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(module: str, source: str, is_package: bool = False) -> set[str]:
    """Absolute names of the project modules `source` (module `module`) imports."""
    tree = ast.parse(source)
    package = module if is_package else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            found |= {f"{base}.{a.name}" for a in node.names} | {base}
    return {n for n in found if n.split(".")[0] in ("speechfm", "speechfm_api")}


def layer(name: str) -> str:
    """core, engine:<name>, stage:<name>, top or root (the `speechfm` package itself)."""
    if name.startswith(CORE):
        return "core"
    if name == ENGINES:
        return "root"
    if name.startswith(ENGINES + "."):
        return f"engine:{name.split('.')[2]}"
    if name.startswith(TOP):
        return "top"
    parts = name.split(".")
    if len(parts) > 1 and parts[1] in STAGES:
        return f"stage:{parts[1]}"
    return "root" if name == "speechfm" or name.startswith("speechfm.__version__") else "unknown"


SOURCES = sorted([*(ROOT / "src" / "speechfm").rglob("*.py"), *(ROOT / "api").rglob("*.py")])


def test_every_module_has_a_layer() -> None:
    unknown = [module_name(p) for p in SOURCES if layer(module_name(p)) == "unknown"]
    assert not unknown, f"modules outside core/stages/api: {unknown} (see docs/architecture.md)"


def violations(module: str, source: str, is_package: bool = False) -> list[str]:
    """The imports of `module` that go up or sideways."""
    mine = layer(module)
    wrong = []
    for target in sorted(imports_of(module, source, is_package)):
        theirs = layer(target)
        if theirs in ("root", "core", mine) or mine == "top":  # the top may use any stage
            continue
        if mine.startswith("stage:") and theirs.startswith("engine:"):  # a stage runs engines
            continue
        wrong.append(f"{target} ({theirs})")
    return wrong


def test_imports_go_downward() -> None:
    """Every module of the tree at once; the failure lists every wrong import, not the first."""
    wrong = []
    for path in SOURCES:
        bad = violations(module_name(path), path.read_text(encoding="utf-8"),
                         path.name == "__init__.py")
        wrong += [f"{module_name(path)} imports {target}" for target in bad]
    assert not wrong, "imports upward or sideways:\n  " + "\n  ".join(wrong)


def test_the_check_catches_upward_and_sideways_imports() -> None:
    """The rule itself is not vacuous: each kind of wrong import is caught, right ones pass."""
    assert violations("speechfm.evaluate.decode", "from speechfm.finetune.data import x\n")
    assert violations("speechfm.core.ctc", "def f():\n    import speechfm.evaluate.lm\n")
    assert violations("speechfm.prepare.units", "from speechfm_api.app import create_app\n")
    assert violations("speechfm.interpret.data", "from ..synth import labeled\n")
    assert violations("speechfm.launch.ranks", "from speechfm.engine.fairseq import job\n")
    assert violations("speechfm.engine.fairseq.worker", "from speechfm.pretrain import config\n")
    assert not violations("speechfm.pretrain.flops", "from speechfm.engine.fairseq import fastpaths\n")
    assert not violations("speechfm.engine.fairseq.job", "from speechfm.launch.ranks import Ranks\n")
    assert not violations("speechfm.evaluate.decode", "from speechfm.core import ctc\n"
                                                      "from .lm import build_arpa\n")
    assert not violations("speechfm_api.attribution", "from speechfm.interpret import ig\n")


FAIRSEQ = ("fairseq", "fairseq_cli")


def fairseq_imports(source: str) -> list[str]:
    """The fairseq modules `source` imports (top-level or inside a function)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level
                 else [])
        found += [n for n in names if n.split(".")[0] in FAIRSEQ]
    return found


def test_only_the_fairseq_box_imports_fairseq() -> None:
    """fairseq's internals are touched in `speechfm.engine.fairseq` only (docs/architecture.md):
    a move to another engine replaces one package."""
    outside = {module_name(p): fairseq_imports(p.read_text(encoding="utf-8")) for p in SOURCES
               if not module_name(p).startswith(ENGINES + ".fairseq")}
    wrong = {module: names for module, names in outside.items() if names}
    assert not wrong, f"fairseq imported outside speechfm.engine.fairseq: {wrong}"
    assert fairseq_imports("def f():\n    from fairseq.data import x\n") == ["fairseq.data"]
