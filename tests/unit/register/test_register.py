"""`speechfm register` refuses a folder that is not a CTC model (a registration run end to end
is in tests/e2e/verbs/test_register.py)."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import run_speechfm


def test_register_refuses_a_folder_that_is_not_a_ctc_model(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    res = run_speechfm("register", tmp_path / "m", "--name", "x", "--tracking-uri",
                       f"sqlite:///{tmp_path / 'db'}", cwd=tmp_path)
    assert res.returncode == 2
    assert "missing model.safetensors" in res.stderr and str(tmp_path / "m") in res.stderr
