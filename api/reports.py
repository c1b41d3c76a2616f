"""LUR reports written by `speechfm lur`: folders holding `lur.json`, `lur.svg` and `lur.png`."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from speechfm_api.errors import ApiError
from speechfm_api.settings import API_PREFIX, NAME_RE

REPORT_JSON = "lur.json"
PLOTS = {"svg": ("lur.svg", "image/svg+xml"), "png": ("lur.png", "image/png")}


def report_dir(root: Path | None, name: str) -> Path:
    """The folder of report `name` under `root`; 422 for a bad name, 404 if there is none."""
    if not NAME_RE.match(name):
        raise ApiError(422, "bad_name", "invalid report name", name=name[:100])
    path = (root / name) if root else None
    if path is None or not (path / REPORT_JSON).is_file() or path.resolve().parent != root.resolve():
        raise ApiError(404, "unknown_report", f"no LUR report called '{name}'")
    return path


def list_reports(root: Path | None) -> list[dict[str, Any]]:
    """Summaries (name, model, per-layer LUR) of every report folder under `root`."""
    if root is None or not root.is_dir():
        return []
    out = []
    for path in sorted(root.iterdir()):
        if NAME_RE.match(path.name) and (path / REPORT_JSON).is_file():
            out.append(summary(path.name, load(path)))
    return out


def load(path: Path) -> dict[str, Any]:
    """A report's lur.json; 422-free: a broken file is reported as such, not as a crash."""
    try:
        data = json.loads((path / REPORT_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ApiError(409, "broken_report", f"{path.name}/{REPORT_JSON} is not readable JSON",
                       detail=str(exc)[:200]) from None
    if not isinstance(data, dict):
        raise ApiError(409, "broken_report", f"{path.name}/{REPORT_JSON} is not a JSON object")
    return data


def lur_curve(data: dict[str, Any]) -> tuple[list[int], list[float]]:
    """(layer numbers, LUR % per layer) from the `lur` stage's `layers` and `lur` fields."""
    lur = data.get("lur")
    if not isinstance(lur, list):
        return [], []
    try:
        values = [float(v) for v in lur]
    except (TypeError, ValueError):
        return [], []
    layers = data.get("layers")
    if not (isinstance(layers, list) and len(layers) == len(values)
            and all(isinstance(x, int) for x in layers)):
        layers = list(range(1, len(values) + 1))
    return layers, values


def _model_name(data: dict[str, Any]) -> str:
    model = data.get("model")
    if isinstance(model, dict):
        model = model.get("name") or model.get("path")
    return str(model) if model is not None else ""


def summary(name: str, data: dict[str, Any]) -> dict[str, Any]:
    layers, values = lur_curve(data)
    return {"name": name, "model": _model_name(data), "layers": layers, "lur_percent": values,
            "links": {"json": f"{API_PREFIX}/reports/{name}",
                      **{kind: f"{API_PREFIX}/reports/{name}/{file}"
                         for kind, (file, _) in PLOTS.items()},
                      "html": f"{API_PREFIX}/reports/{name}/page"}}


def page(name: str, data: dict[str, Any], has_svg: bool) -> str:
    """A standalone HTML page for one report: the plot and a table of LUR per layer."""
    info = summary(name, data)
    rows = "\n".join(f"<tr><td>{i}</td><td>{v:.1f}</td></tr>"
                     for i, v in zip(info["layers"], info["lur_percent"]))
    plot = (f'<img src="{info["links"]["svg"]}" alt="LUR per layer" width="640">'
            if has_svg else "<p>(no plot in this report)</p>")
    e = html.escape
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>LUR report {e(name)}</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:2px 10px;text-align:right}}</style>
</head><body>
<h1>LUR report {e(name)}</h1>
<p>Model: <b>{e(info["model"])}</b> &middot; <a href="{info["links"]["json"]}">lur.json</a>
&middot; <a href="{info["links"]["png"]}">PNG</a> &middot; <a href="/">service page</a></p>
{plot}
<table><thead><tr><th>layer</th><th>LUR %</th></tr></thead><tbody>
{rows}
</tbody></table>
</body></html>
"""
