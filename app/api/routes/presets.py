"""GET /v1/presets: the published protocols a job can name in one word, with every choice each one fixes."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from app.api.problems import errors
from soundcheck.presets import PRESETS, Preset

router = APIRouter(prefix="/presets", tags=["presets"])


@router.get("", response_model=list[Preset])
def list_presets() -> list[Preset]:
    """Each preset: the peer it follows, its numbers (metric, model variant, fixed options), its choices, where
    soundcheck's default differs, and what it cannot reproduce exactly."""
    return list(PRESETS.values())


@router.get("/{name}", response_model=Preset, responses=errors(404))
def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise HTTPException(404, f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    return PRESETS[name]
