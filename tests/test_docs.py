"""Documentation that cannot drift: every command has --help text and a README mention; the shipped
JSON Schema, the validator's SCHEMA table and the README's manifest reference agree."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import click
import jsonschema
import pytest
import yaml
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.manifest import CHAPTER_SCHEMA, SCHEMA, Field, json_schema

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text(encoding="utf-8")


def walk_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, click.Command]]:
    for name, command in sorted(group.commands.items()):
        path = (*prefix, name)
        yield " ".join(path), command
        if isinstance(command, click.Group):
            yield from walk_commands(command, path)


COMMANDS = list(walk_commands(main))


def test_there_are_commands_to_check() -> None:
    assert {"plan", "schema"} <= {name for name, _ in COMMANDS}


@pytest.mark.parametrize("name, command", COMMANDS, ids=[name for name, _ in COMMANDS])
def test_every_command_has_help_text(name: str, command: click.Command) -> None:
    assert (command.help or "").strip(), f"`audiobook {name}` has no docstring/help text"
    result = CliRunner().invoke(main, [*name.split(), "--help"])
    assert result.exit_code == 0, result.output
    assert f"Usage: main {name}" in result.output or f"Usage: audiobook {name}" in result.output
    first_line = command.help.strip().splitlines()[0]
    assert first_line.split()[0] in result.output
    for param in command.params:
        if isinstance(param, click.Option) and not param.hidden:
            assert param.help, f"`audiobook {name}` option {param.opts[0]} has no help text"


def test_every_command_is_in_the_readme() -> None:
    missing = [name for name, _ in COMMANDS if f"audiobook {name}" not in README]
    assert not missing, "commands missing from README.md: " + ", ".join(f"`audiobook {m}`" for m in missing)


# --- the JSON Schema, the SCHEMA table and the README reference ----------------------------------

def _dotted_keys(fields: Mapping[str, Field], prefix: str = "") -> Iterator[str]:
    for name, field in fields.items():
        yield prefix + name
        if field.kind == "section" and field.children is not None:
            yield from _dotted_keys(field.children, f"{prefix}{name}.")
        if field.kind == "chapters":
            yield from _dotted_keys(CHAPTER_SCHEMA, f"{prefix}{name}[].")


def _schema_keys(node: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    for name, child in node.get("properties", {}).items():
        yield prefix + name
        if child.get("type") == "object":
            yield from _schema_keys(child, f"{prefix}{name}.")
        if child.get("type") == "array":
            yield from _schema_keys(child["items"], f"{prefix}{name}[].")


def test_the_json_schema_is_a_valid_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(json_schema())


def test_every_schema_key_is_in_the_json_schema_and_back() -> None:
    table = set(_dotted_keys(SCHEMA))
    shipped = set(_schema_keys(json_schema()))
    assert table - shipped == set(), "keys the validator knows but the JSON Schema lacks"
    assert shipped - table == set(), "keys the JSON Schema has but the validator does not know"


def test_every_schema_key_is_in_the_readme_reference() -> None:
    missing = [key for key in _dotted_keys(SCHEMA) if f"| `{key}` |" not in README]
    assert not missing, "manifest keys missing from the README reference: " + ", ".join(missing)


def test_schema_defaults_and_ranges_match_the_validator() -> None:
    shipped = json_schema()["properties"]
    speed = shipped["voice"]["properties"]["speed"]
    assert (speed["minimum"], speed["maximum"], speed["default"]) == (0.5, 2.0, 1.0)
    assert shipped["voice"]["properties"]["vol"]["exclusiveMinimum"] == 0
    assert shipped["chunking"]["properties"]["max_chars"]["maximum"] == 9999
    assert set(shipped["voice"]["properties"]["emotion"]["enum"]) == set(SCHEMA["voice"].children["emotion"].choices)


@pytest.mark.parametrize("name", ["sample.yaml", "sample-zh.yaml"])
def test_the_sample_manifests_satisfy_the_json_schema(name: str) -> None:
    document = yaml.safe_load((REPO / "manifests" / name).read_text(encoding="utf-8"))
    jsonschema.validate(document, json_schema())


@pytest.mark.parametrize("change", [
    {"voice": {"model_id": "m", "emotion": "bored"}},
    {"voice": {"model_id": "m", "speed": 3}},
    {"chunking": {"max_chars": 10000}},
    {"emotoin": "sad"},
    {"chapters": []},
    {"chapters": [{"id": "../x", "text": "Hi."}]},
    {"chapters": [{"id": "a"}]},
])
def test_the_json_schema_rejects_what_the_validator_rejects(change: dict) -> None:
    document = {"title": "T", "voice": {"model_id": "m"}, "chapters": [{"id": "a", "text": "Hi."}], **change}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, json_schema())
