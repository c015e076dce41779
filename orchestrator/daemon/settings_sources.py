"""Where a setting comes from, and what to tell the user when one is wrong.

Settings come from `load_settings`'s arguments, then `ORCHESTRATOR_<SECTION>__<KEY>` environment
variables, then the TOML file. A refused configuration becomes one line per problem naming where
it was written (the file's `[section] key`, or the variable) and the setting most likely meant; an
accepted one remembers where each value came from (`Settings.origin`).
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

ENV_PREFIX = "ORCHESTRATOR_"
CONFIG_ENV = "ORCHESTRATOR_CONFIG"
_CREDENTIAL_WORDS = ("secret", "access_key", "session_token", "password", "credential")


def section_keys(model: type[BaseModel]) -> dict[str, list[str]]:
    """Every section of `model` (the `Settings` class) and the keys it takes."""
    out: dict[str, list[str]] = {}
    for name, field in model.model_fields.items():
        out[name] = list(getattr(field.annotation, "model_fields", {}))
    return out


def _closest(word: str, candidates: list[str]) -> str | None:
    found = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return found[0] if found else None


def unknown_environment(model: type[BaseModel]) -> list[str]:
    """`ORCHESTRATOR_*` variables naming no section (misspelled, or one `_` instead of `__`).

    pydantic-settings ignores those silently; an unknown key inside a known section is caught by
    the section's `extra="forbid"` instead.
    """
    sections = section_keys(model)
    known = [CONFIG_ENV] + [
        f"{ENV_PREFIX}{section}__{key}".upper()
        for section, keys in sections.items()
        for key in keys
    ]
    problems = []
    for name in sorted(os.environ):
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper == CONFIG_ENV:
            continue
        section = upper.removeprefix(ENV_PREFIX).split("__", 1)[0].lower()
        if section in sections:
            continue
        guess = _closest(upper, known)
        hint = f", did you mean {guess}?" if guess else ""
        problems.append(f"{name}: not a setting{hint}")
    return problems


def _explain(loc: list[str], err: Any, variable: str | None, sections: dict[str, list[str]]) -> str:
    """What is wrong with the value at `loc` (`variable`: the environment variable it came
    from, if any)."""
    if err["type"] == "missing":
        return "required"
    if err["type"] == "extra_forbidden":
        if any(word in loc[-1].lower() for word in _CREDENTIAL_WORDS):
            return (
                "not a setting: credentials come only from the standard AWS chain "
                "(environment, shared config, instance or task role), never from this file"
            )
        return _unknown(loc, sections, from_environment=variable is not None)
    return str(err["msg"]).removeprefix("Value error, ")


def _unknown(loc: list[str], sections: dict[str, list[str]], *, from_environment: bool) -> str:
    """An unknown section or key, with the setting most likely meant: the same key in another
    section, else the closest name in its own section, else in another one."""
    here = loc[0] if len(loc) == 2 else None
    key = loc[-1].lower()

    def spelled(places: list[tuple[str, str]]) -> str:
        if from_environment:
            names = [f"{ENV_PREFIX}{s}__{k}".upper() for s, k in places]
            return names[0] if len(names) == 1 else f"one of {', '.join(names)}"
        if len(places) == 1:
            return f"[{places[0][0]}] {places[0][1]}"
        return f"{places[0][1]} of " + ", ".join(f"[{s}]" for s, _ in places)

    others = [(s, k) for s, keys in sections.items() if s != here for k in keys]
    elsewhere = [(s, k) for s, k in others if k == key]
    if len(loc) > 2:
        return "unknown setting"
    if here is None:  # a section, or a key written outside any section
        guess = _closest(key, list(sections))
        if guess or not elsewhere:
            return "unknown setting" + (f", did you mean {guess}?" if guess else "")
        return f"not a section; did you mean {spelled(elsewhere)}?"
    own = _closest(key, sections.get(here, []))
    if not elsewhere and own:
        return f"unknown setting, did you mean {own}?"
    if not elsewhere:
        near = _closest(key, [k for _, k in others])
        if near is None:
            return "unknown setting"
        elsewhere = [next((s, k) for s, k in others if k == near)]
    return f"not a setting of [{here}]; did you mean {spelled(elsewhere)}?"


def lookup(data: Any, key: str) -> str | None:
    """`key` as spelled in `data` (TOML keys match case-insensitively), or None."""
    if isinstance(data, dict):
        for written in data:
            if str(written).lower() == key.lower():
                return str(written)
    return None


def set_variable(loc: list[str]) -> str | None:
    """The environment variable that set the value at `loc`, as written, or None."""
    set_names = {name.upper(): name for name in os.environ}
    for depth in range(len(loc), 0, -1):  # a whole section may come as one JSON variable
        name = ENV_PREFIX + "__".join(p.upper() for p in loc[:depth])
        if name in set_names:
            return set_names[name]
    return None


def where(loc: list[str], file: Path | None, document: dict[str, Any]) -> str:
    """Where the value at `loc` was set, as the user wrote it: a variable or the file's key."""
    env = ENV_PREFIX + "__".join(p.upper() for p in loc)
    variable = set_variable(loc)
    if variable is not None:
        return f"environment variable {variable}"
    if file is not None:
        section = lookup(document, loc[0])
        key = lookup(document[section], loc[1]) if section is not None and len(loc) > 1 else None
        if section is not None and len(loc) == 1 and not isinstance(document[section], dict):
            return f"in {file}: {section}, outside any section"
        if section is not None and (len(loc) == 1 or key is not None):
            return f"in {file}: [{section}]" + (f" {key}" if key else "")
        if len(loc) > 1:
            return f"set {loc[1]} under [{loc[0]}] in {file}, or environment variable {env}"
    return f"environment variable {env}"


def describe(
    error: ValidationError | None,
    model: type[BaseModel],
    file: Path | None = None,
    document: dict[str, Any] | None = None,
    unknown: list[str] | None = None,
) -> str:
    lines = list(unknown or [])
    for err in error.errors() if error is not None else []:
        loc = [str(p) for p in err["loc"]]
        if err["type"] == "missing" and len(loc) == 1 and loc[0] in model.model_fields:
            # A whole section is missing: name the keys it needs.
            section = model.model_fields[loc[0]].annotation
            fields = getattr(section, "model_fields", {})
            loc += [next((k for k, f in fields.items() if f.is_required()), "")]
        key = ".".join(loc) or "settings"
        problem = _explain(loc, err, set_variable(loc), section_keys(model))
        lines.append(f"{key}: {problem} ({where(loc, file, document or {})})")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def origins(
    model: type[BaseModel],
    file: Path | None,
    document: dict[str, Any],
    overrides: dict[str, Any],
) -> dict[tuple[str, str], str]:
    """Where each value set outside the defaults came from, by the same precedence as the
    sources: `load_settings`'s arguments, then the environment, then the file."""
    found: dict[tuple[str, str], str] = {}
    for section, keys in section_keys(model).items():
        for key in keys:
            given = overrides.get(section)
            variable = set_variable([section, key])
            if given is not None and (not isinstance(given, dict) or key in given):
                found[section, key] = "given to load_settings"
            elif variable is not None:
                found[section, key] = f"environment variable {variable}"
            elif file is not None and lookup(document.get(lookup(document, section) or ""), key):
                found[section, key] = where([section, key], file, document)
    return found
