"""Administration (tag ``admin``): the API keys, listed without secrets."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from serve.gates import Security
from serve.schemas import KeyOut


def add_routes(router: APIRouter, sec: Security) -> None:
    """``/v1/keys`` over ``sec.keys`` (empty when the API runs open)."""

    @router.get("/v1/keys", response_model=list[KeyOut], tags=["admin"])
    def keys() -> list[dict[str, Any]]:
        """API keys (role ``admin``): ids, names, roles, never secrets. Create and revoke
        them with ``precovery keys``. Empty when the API runs open."""
        if sec.keys is None:
            return []
        return [k.public() for k in sec.keys.keys()]
