"""What `pip install` puts into site-packages: every package folder of src/ and api/, the service
under the name `speechfm_api` (not a top-level `api`, which would clash with other projects)."""

from __future__ import annotations

import importlib.util
import tomllib

from tests.helpers import ROOT


def _setuptools() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]


def test_the_package_list_names_every_package_folder() -> None:
    listed = set(_setuptools()["packages"])
    folders = {".".join(p.parent.relative_to(ROOT / "src").parts)
               for p in (ROOT / "src").rglob("__init__.py")}
    folders |= {".".join(("speechfm_api", *p.parent.relative_to(ROOT / "api").parts))
                for p in (ROOT / "api").rglob("__init__.py")}
    assert listed == folders, (f"missing from pyproject.toml: {sorted(folders - listed)}; "
                               f"listed without a folder: {sorted(listed - folders)}")


def test_the_service_installs_as_speechfm_api_from_the_api_folder() -> None:
    assert _setuptools()["package-dir"] == {"": "src", "speechfm_api": "api"}
    spec = importlib.util.find_spec("speechfm_api")
    assert spec is not None and spec.origin == str(ROOT / "api" / "__init__.py")
    assert not any(name == "api" or name.startswith("api.") for name in _setuptools()["packages"])
