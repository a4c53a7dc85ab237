"""The library entry points: each composes the stages for one command. Usable without click.

    plan(manifest)   manifest -> chunks -> estimate
"""

from __future__ import annotations

from pathlib import Path

from pipeline.manifest import load_manifest
from pipeline.planning import BookPlan, plan_book
from pipeline.errors import ConfigError


def plan(manifest_path: Path, *, chapter_ids: tuple[str, ...] = ()) -> BookPlan:
    """Validate a manifest and plan its chunks. No network."""
    manifest = load_manifest(manifest_path)
    unknown = [c for c in chapter_ids if c not in {ch.id for ch in manifest.chapters}]
    if unknown:
        known = ", ".join(ch.id for ch in manifest.chapters)
        raise ConfigError(f"--chapter {unknown[0]}: no such chapter in {manifest_path}; chapters are {known}")
    return plan_book(manifest, chapter_ids=chapter_ids)
