"""LUR reports written by `speechfm lur`: list, JSON, plots and an HTML page."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse

from speechfm_api.errors import ApiError
from speechfm_api.reports import PLOTS, list_reports, load, page, report_dir
from speechfm_api.schemas import ERRORS, Name, ReportList
from speechfm_api.service import ServiceDep
from speechfm_api.settings import API_PREFIX

router = APIRouter(prefix=API_PREFIX, tags=["reports"])


@router.get("/reports", response_model=ReportList)
async def reports(service: ServiceDep) -> dict:
    """LUR reports written by `speechfm lur`."""
    return {"reports": list_reports(service.settings.reports_dir)}


@router.get("/reports/{name}", responses=ERRORS)
async def report(name: Name, service: ServiceDep) -> dict:
    """A report's lur.json, as written."""
    return load(report_dir(service.settings.reports_dir, name))


@router.get("/reports/{name}/page", response_class=HTMLResponse, responses=ERRORS)
async def report_page(name: Name, service: ServiceDep) -> HTMLResponse:
    """A report as an HTML page: plot and LUR table."""
    path = report_dir(service.settings.reports_dir, name)
    return HTMLResponse(page(name, load(path), (path / PLOTS["svg"][0]).is_file()))


def plot_route(filename: str, media: str) -> Callable[..., FileResponse]:
    def plot(name: Name, service: ServiceDep) -> FileResponse:
        path = report_dir(service.settings.reports_dir, name) / filename
        if not path.is_file():
            raise ApiError(404, "no_plot", f"report '{name}' has no {filename}")
        return FileResponse(path, media_type=media)
    return plot


for _kind, (_filename, _media) in PLOTS.items():
    router.get(f"/reports/{{name}}/{_filename}", response_class=FileResponse,
               responses={**ERRORS, 200: {"content": {_media: {}}}},
               summary=f"A report's {_kind.upper()} plot")(plot_route(_filename, _media))
