"""Liveness, readiness and the model listing."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from speechfm_api.schemas import ErrorBody, Health, ModelDetail, ModelList, Name, Ready
from speechfm_api.service import ServiceDep
from speechfm_api.settings import API_PREFIX

router = APIRouter(prefix=API_PREFIX)


@router.get("/health", response_model=Health, tags=["service"])
async def health() -> dict:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/ready", response_model=Ready, tags=["service"], responses={503: {"model": Ready}})
async def ready(service: ServiceDep) -> JSONResponse:
    """Readiness: started, preloaded models loaded."""
    registry = service.registry
    models = await asyncio.get_running_loop().run_in_executor(None, registry.entries)
    body = {"ready": service.ready, "models": len(models), "loaded": registry.loaded(),
            "batching": {name: {"batches": b.batches, "clips": b.clips}
                         for name, b in service.batchers.items()}}
    return JSONResponse(body, 200 if service.ready else 503)


@router.get("/models", response_model=ModelList, tags=["models"])
async def models(service: ServiceDep) -> dict:
    """Models in the registry (models folder and MLflow registered models), as OpenAI lists
    models (`object`, `data`) and in the service's own shape (`models`)."""
    loop = asyncio.get_running_loop()
    entries = list((await loop.run_in_executor(None, service.registry.entries, True)).values())
    return {"object": "list", "data": [e.openai() for e in entries],
            "models": [e.public() for e in entries]}


@router.get("/models/{name}", response_model=ModelDetail, tags=["models"],
            responses={404: {"model": ErrorBody}, 422: {"model": ErrorBody}})
async def model(name: Name, service: ServiceDep) -> dict:
    """One model of the registry (without loading it)."""
    entry = await asyncio.get_running_loop().run_in_executor(None, service.registry.entry, name)
    return {**entry.openai(), **entry.public()}
