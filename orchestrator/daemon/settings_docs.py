"""`config.example.toml` and `docs/settings-reference.md`, generated from the settings model.

Every section and key, its type, default, bounds and description come from `settings.py` (and,
for the settings that feed an engine value, from that value's field): edit them there, then

    python -m orchestrator.daemon.settings_docs --write

`--check` (the default) exits 1 naming the files that are out of date; a test does the same.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from orchestrator.daemon.engine_fields import bounds_of
from orchestrator.daemon.settings import CONFIG_ENV, ENV_PREFIX, Settings

REGENERATE = "python -m orchestrator.daemon.settings_docs --write"
EXAMPLE = Path("config.example.toml")
REFERENCE = Path("docs/settings-reference.md")
_WIDTH = 100


@dataclass(frozen=True)
class Key:
    """One setting as the generated files show it."""

    section: str
    name: str
    info: FieldInfo

    @property
    def required(self) -> bool:
        return self.info.is_required()

    @property
    def description(self) -> str:
        return self.info.description or ""

    @property
    def environment(self) -> str:
        return f"{ENV_PREFIX}{self.section}__{self.name}".upper()

    @property
    def example(self) -> Any:
        """The value the example file shows: the default, else the field's example."""
        if not self.required and self.info.default is not None:
            return self.info.default
        return (self.info.examples or [None])[0]

    @property
    def bounds(self) -> str:
        lengths = [getattr(m, "min_length", None) for m in self.info.metadata]
        shortest = next((n for n in lengths if n is not None), None)
        if shortest is not None:
            return f"at least {shortest} character" + ("s" if shortest > 1 else "")
        return str(bounds_of(self.info))

    @property
    def type(self) -> str:
        return _type_name(self.info.annotation)


def _type_name(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin is Literal:
        return "one of " + ", ".join(json.dumps(choice) for choice in get_args(annotation))
    if origin in {typing.Union, types.UnionType}:
        present = [a for a in get_args(annotation) if a is not type(None)]
        return " or ".join(_type_name(a) for a in present) + ", may be unset"
    if origin is list:
        return f"list of {_type_name(get_args(annotation)[0])}s"
    names = {bool: "boolean", int: "integer", float: "number", str: "string"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def sections() -> list[tuple[str, type[BaseModel], list[Key]]]:
    """Every section of `Settings`, in the model's order, with its keys."""
    out = []
    for name, field in Settings.model_fields.items():
        model = field.annotation
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise TypeError(f"[{name}] is not a section")
        keys = [Key(name, key, info) for key, info in model.model_fields.items()]
        out.append((name, model, keys))
    return out


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value)  # strings and lists of strings: JSON's spelling is TOML's


def _doc(model: type[BaseModel]) -> str:
    return " ".join((model.__doc__ or "").split())


def _comment(text: str) -> list[str]:
    """`text` as comment lines; the regeneration command is never split."""
    kept = text.replace(REGENERATE, REGENERATE.replace(" ", "\0"))
    lines = textwrap.wrap(kept, _WIDTH - 2, initial_indent="# ", subsequent_indent="# ")
    return [line.replace("\0", " ") for line in lines]


_EXAMPLE_HEADER = [
    "contact-orchestrator configuration: every key, with its default.",
    f"Generated from orchestrator/daemon/settings.py by `{REGENERATE}`: edit the descriptions "
    "there, not here. docs/settings-reference.md lists the same keys.",
    "Every key is optional except [queue] url; the keys below are commented out at their "
    "defaults (or, for keys unset by default, at an example value marked as such). Each key "
    "can also be set, and is then overridden, by an environment variable "
    f"{ENV_PREFIX}<SECTION>__<KEY>, e.g. {ENV_PREFIX}QUEUE__URL or "
    f"{ENV_PREFIX}CONNECT__QUOTA_SHARE; environment variables alone are a complete configuration. "
    f"Point the worker at this file with --config PATH or {CONFIG_ENV}=PATH.",
    "Credentials are NOT configured here: they come from the standard AWS chain (environment, "
    "shared config files, IAM roles for service accounts, ECS task roles, instance profiles). "
    "`orchestrator check-config` prints the effective settings.",
]


def example_toml() -> str:
    """The text of `config.example.toml`."""
    lines: list[str] = []
    for paragraph in _EXAMPLE_HEADER:
        lines += [*(["#"] if lines else []), *_comment(paragraph)]
    for name, model, keys in sections():
        lines += ["", "", f"[{name}]", *_comment(_doc(model))]
        for key in keys:
            note = [key.bounds] if key.bounds else []
            if key.required:
                note.append("required")
            elif key.info.default is None:
                note.append("example")
            entry = f"{key.name} = {_toml(key.example)}"
            lines += ["", *_comment(key.description)]
            lines.append(entry if key.required else f"# {entry}" + _note(note))
    return "\n".join(lines) + "\n"


def _note(parts: list[str]) -> str:
    return f"  # {'; '.join(parts)}" if parts else ""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def _code(text: str) -> str:
    """A code span in a table cell (only `|` needs escaping there)."""
    escaped = text.replace("|", "\\|")
    return f"`{escaped}`" if text else ""


def _default_cell(key: Key) -> str:
    if key.required:
        return "required"
    if key.info.default is None:
        return "unset"
    return _code(_toml(key.info.default))


_REFERENCE_INTRO = [
    "# Settings reference",
    f"<!-- Generated from orchestrator/daemon/settings.py by `{REGENERATE}`: edit the "
    "descriptions there, not here. -->",
    f"The worker reads one TOML file (`--config PATH`, or the path in `{CONFIG_ENV}`) and "
    f"environment variables `{ENV_PREFIX}<SECTION>__<KEY>` (for example `{ENV_PREFIX}QUEUE__URL`), "
    "which win over the file; environment variables alone are a complete configuration. Every "
    "key is optional except `[queue] url`. `config.example.toml` at the root of the repository "
    "has every key at its default.",
    "Credentials never come from here, only from the standard AWS chain (environment, shared "
    "config files, IAM roles for service accounts, ECS task roles, instance profiles). "
    "`orchestrator check-config` validates a configuration and prints the effective settings.",
]


def reference_markdown() -> str:
    """The text of `docs/settings-reference.md`: one heading and one table per section."""
    lines = "\n\n".join(_REFERENCE_INTRO).splitlines()
    for name, model, keys in sections():
        lines += ["", f"## [{name}]", "", _cell(_doc(model)), ""]
        lines.append(f"Environment variables: `{ENV_PREFIX}{name.upper()}__<KEY>`.")
        lines += ["", "| key | type | default | bounds | description |", "|---|---|---|---|---|"]
        lines += [
            f"| `{k.name}` | {_cell(k.type)} | {_default_cell(k)} | {_code(k.bounds)} "
            f"| {_cell(k.description)} |"
            for k in keys
        ]
    return "\n".join(lines) + "\n"


def outputs(root: Path) -> dict[Path, str]:
    """Each generated file under `root` (the repository) and the text it must hold."""
    return {root / EXAMPLE: example_toml(), root / REFERENCE: reference_markdown()}


def stale(root: Path) -> list[Path]:
    """The generated files under `root` that are missing or out of date."""
    return [
        path
        for path, text in outputs(root).items()
        if not path.is_file() or path.read_text(encoding="utf-8") != text
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m orchestrator.daemon.settings_docs", description=__doc__.splitlines()[0]
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="regenerate both files")
    mode.add_argument("--check", action="store_true", help="exit 1 if either is out of date")
    parser.add_argument(
        "--root",
        type=Path,
        default=Path(__file__).resolve().parents[2],
        help="the repository (default: the one this module is in)",
    )
    args = parser.parse_args(argv)
    if args.write:
        for path, text in outputs(args.root).items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
        return 0
    out_of_date = stale(args.root)
    for path in out_of_date:
        print(f"{path} is out of date: run `{REGENERATE}`", file=sys.stderr)
    return 1 if out_of_date else 0


if __name__ == "__main__":
    sys.exit(main())
