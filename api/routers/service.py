"""Liveness, readiness and the model listing."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.schemas import Health, ModelList, Ready
from api.service import ServiceDep
from api.settings import API_PREFIX

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
    """Models in the registry (models folder and MLflow registered models)."""
    loop = asyncio.get_running_loop()
    entries = await loop.run_in_executor(None, service.registry.entries, True)
    return {"models": [e.public() for e in entries.values()]}
