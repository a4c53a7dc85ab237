"""The JSON Schema shipped for editors is the one `audiobook schema` prints (regenerate it with
`audiobook schema > manifests/manifest.schema.json`), and the sample manifests point at it."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.manifest import json_schema

MANIFESTS = Path(__file__).resolve().parent.parent / "manifests"


def test_the_shipped_schema_is_current() -> None:
    shipped = json.loads((MANIFESTS / "manifest.schema.json").read_text(encoding="utf-8"))
    assert shipped == json_schema(), "run: audiobook schema > manifests/manifest.schema.json"


def test_the_sample_manifests_name_the_schema_for_editors() -> None:
    for manifest in MANIFESTS.glob("*.yaml"):
        first = manifest.read_text(encoding="utf-8").splitlines()[0]
        assert first == "# yaml-language-server: $schema=manifest.schema.json", manifest.name
