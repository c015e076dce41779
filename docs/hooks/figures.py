"""MkDocs hook: figures from `bench/results.json`, defaults from the settings model, and markdown
included from outside `docs/`, so that no page retypes a number that has a home elsewhere.

Placeholders, anywhere in a page's markdown except code (fenced blocks and `inline code` are left
as written, so a page can show the syntax itself):

    {{ figure scenarios.fleet.requests }}                  the value in the default format: 240
    {{ figure scenarios.scale.ours.rss_per_contact_kib .0f KiB }}   a Python format spec, a unit
    {{ figure scenarios.quota.quota_efficiency .1% }}      a fraction as a percentage: 96.7 %
    {{ figure scenarios.fleet.requests - requests }}       "-": the default format, then a unit
    {{ default watch.first_delay_s - s }}                  a setting's default, from `Settings`
    {{ include bench/RESULTS.md demote=1 }}                another file's markdown

A figure's path is a dotted path into results.json (list items by index; a key that itself holds
dots, such as `screen_sharing.started`, is found too). A default's path is `section.key`. Paths of
included files are relative to the repository root (the folder of mkdocs.yml); their headings are
demoted by `demote` levels, and their relative links and images are rewritten to work from the
including page (files outside `docs/` that they point to are added to the site).

A figure or default that does not exist, or an include that cannot be read, is logged as a warning
and shown as a visible marker: `mkdocs build --strict` (part of `make test`) then fails.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.livereload import LiveReloadServer
from mkdocs.plugins import get_plugin_logger
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

log = get_plugin_logger("figures")

#: Where the benchmark suite records every figure, relative to the repository root.
RESULTS = "bench/results.json"

_PLACEHOLDER = re.compile(r"\{\{\s*(figure|default|include)\s+([^{}]*?)\s*\}\}")
_FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})")
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.DOTALL)
_LINK = re.compile(r"(!?\[[^\]]*\]\()([^)\s]+)((?:\s+\"[^\"]*\")?\))")
_HEADING = re.compile(r"^(#{1,6})(\s)")


class Missing(LookupError):
    """A placeholder names something that does not exist."""


# -- values ---------------------------------------------------------------------------------


def lookup(document: Any, path: str) -> Any:
    """The value at dotted `path` in `document` (dicts and lists); `Missing` if there is none."""
    found = _walk(document, path.split("."))
    if found is _ABSENT:
        raise Missing(path)
    return found


_ABSENT = object()


def _walk(node: Any, parts: list[str]) -> Any:
    if not parts:
        return node
    if isinstance(node, list):
        head = parts[0]
        if head.isdigit() and int(head) < len(node):
            return _walk(node[int(head)], parts[1:])
        return _ABSENT
    if not isinstance(node, dict):
        return _ABSENT
    # The longest key first: `finals.screen_sharing.started` is `finals`, `screen_sharing.started`.
    for cut in range(len(parts), 0, -1):
        key = ".".join(parts[:cut])
        if key in node:
            found = _walk(node[key], parts[cut:])
            if found is not _ABSENT:
                return found
    return _ABSENT


def render(value: Any, spec: str = "", unit: str = "") -> str:
    """`value` as a page shows it: `spec` a Python format spec ("" or "-": the default format;
    ending in `%`, a fraction shown as a percentage with a space before the sign), then `unit`."""
    if spec in ("", "-"):
        text = _default_format(value)
    elif spec.endswith("%"):
        text = format(value, spec)[:-1] + " %"
    else:
        text = format(value, spec)
    return f"{text} {unit}" if unit else text


def _default_format(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()  # as TOML writes it
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value.is_integer() or abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.3g}"  # three significant digits: 12.4, 0.574
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_default_format(v) for v in value) + "]"
    return str(value)


def setting_default(path: str) -> Any:
    """The default of setting `section.key`, read from the settings model (its one home)."""
    from pydantic import BaseModel  # noqa: PLC0415 (only pages that show a default need them)
    from pydantic_core import PydanticUndefined  # noqa: PLC0415

    from orchestrator.daemon.settings import Settings  # noqa: PLC0415

    section_name, _, key = path.partition(".")
    section = Settings.model_fields.get(section_name)
    model = section.annotation if section is not None else None
    if not (isinstance(model, type) and issubclass(model, BaseModel)) or key not in (
        model.model_fields
    ):
        raise Missing(path)
    value = model.model_fields[key].get_default(call_default_factory=True)
    if value is PydanticUndefined:
        raise Missing(f"{path} (required: it has no default)")
    return value


# -- markdown -------------------------------------------------------------------------------


def prose_segments(markdown: str) -> Iterator[tuple[bool, str]]:
    """`markdown` cut into (is_prose, text) pieces: code (fenced blocks, inline spans) is not
    prose. Joining the texts gives `markdown` back."""
    fence: str | None = None
    prose: list[str] = []
    for line in markdown.splitlines(keepends=True):
        opening = _FENCE.match(line)
        if fence is None and opening:
            fence = opening.group(2)
            yield from _spans("".join(prose))
            prose = []
            yield False, line
        elif fence is not None:
            if line.strip().startswith(fence) and line.strip().strip(fence[0]) == "":
                fence = None
            yield False, line
        else:
            prose.append(line)
    yield from _spans("".join(prose))


def _spans(text: str) -> Iterator[tuple[bool, str]]:
    last = 0
    for match in _CODE_SPAN.finditer(text):
        if match.start() > last:
            yield True, text[last : match.start()]
        yield False, match.group(0)
        last = match.end()
    if last < len(text):
        yield True, text[last:]


def substitute(markdown: str, replace: Callable[[str, str], str]) -> str:
    """Each placeholder in the prose of `markdown` replaced by `replace(kind, arguments)`."""
    return "".join(
        _PLACEHOLDER.sub(lambda m: replace(m.group(1), m.group(2)), text) if is_prose else text
        for is_prose, text in prose_segments(markdown)
    )


def placeholders(markdown: str) -> Iterator[tuple[str, str]]:
    """(kind, arguments) of every placeholder in the prose of `markdown`."""
    for is_prose, text in prose_segments(markdown):
        if is_prose:
            for match in _PLACEHOLDER.finditer(text):
                yield match.group(1), match.group(2)


def demote_headings(markdown: str, levels: int) -> str:
    """ATX headings outside code moved down `levels` levels (at most to `######`)."""
    if levels <= 0:
        return markdown

    def demote(match: re.Match[str]) -> str:
        return "#" * min(6, len(match.group(1)) + levels) + match.group(2)

    return "".join(
        "".join(_HEADING.sub(demote, line) for line in text.splitlines(keepends=True))
        if is_prose
        else text
        for is_prose, text in prose_segments(markdown)
    )


def link_targets(markdown: str) -> Iterator[str]:
    """The relative link and image targets in the prose of `markdown` (no URLs, no anchors)."""
    for is_prose, text in prose_segments(markdown):
        if is_prose:
            for match in _LINK.finditer(text):
                target = match.group(2).split("#", 1)[0]
                if _relative(target):
                    yield target


def _relative(target: str) -> bool:
    url = re.match(r"^[a-z][a-z0-9+.-]*:", target)
    return bool(target) and not target.startswith("/") and url is None


def rewrite_links(markdown: str, relocate: Callable[[str], str | None]) -> str:
    """Relative link targets in the prose of `markdown` replaced by `relocate(target)` (the
    fragment kept); a target it returns None for is left as written."""

    def one(match: re.Match[str]) -> str:
        path, hash_, fragment = match.group(2).partition("#")
        if not _relative(path):
            return match.group(0)
        moved = relocate(path)
        if moved is None:
            return match.group(0)
        return f"{match.group(1)}{moved}{hash_}{fragment}{match.group(3)}"

    return "".join(
        _LINK.sub(one, text) if is_prose else text for is_prose, text in prose_segments(markdown)
    )


# -- the site -------------------------------------------------------------------------------


def _root(config: MkDocsConfig) -> Path:
    return Path(config.config_file_path).resolve().parent


def _docs_dir(config: MkDocsConfig) -> Path:
    return Path(config.docs_dir).resolve()


def _include_arguments(arguments: str) -> tuple[str, int]:
    path, *options = arguments.split()
    demote = 0
    for option in options:
        name, _, value = option.partition("=")
        if name != "demote" or not value.isdigit():
            raise Missing(f"include option {option!r} (known: demote=N)")
        demote = int(value)
    return path, demote


def _outside_target(included: Path, target: str, root: Path, docs_dir: Path) -> str | None:
    """The site path (relative to docs_dir) of a file outside docs/ that an included file links
    to, or None when the target is inside docs/ or not a file of the repository."""
    absolute = (included.parent / target).resolve()
    if absolute.is_relative_to(docs_dir) or not absolute.is_relative_to(root):
        return None
    if not absolute.is_file():
        return None
    return absolute.relative_to(root).as_posix()


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Adds the files outside docs/ that included markdown links to (the benchmark plots)."""
    root, docs_dir = _root(config), _docs_dir(config)
    for page in list(files.documentation_pages()):
        if page.abs_src_path is None:
            continue
        source = Path(page.abs_src_path).read_text(encoding="utf-8")
        for kind, arguments in placeholders(source):
            if kind != "include":
                continue
            try:
                included = root / _include_arguments(arguments)[0]
                text = included.read_text(encoding="utf-8")
            except (Missing, OSError, ValueError):
                continue  # reported when the page is rendered
            for target in link_targets(text):
                uri = _outside_target(included, target, root, docs_dir)
                if uri is not None and files.get_file_from_path(uri) is None:
                    absolute = str((included.parent / target).resolve())
                    files.append(File.generated(config, uri, abs_src_path=absolute))
    return files


def on_page_markdown(
    markdown: str,
    *,
    page: Page,
    config: MkDocsConfig,
    files: Files,  # noqa: ARG001 (MkDocs passes every argument of the event by name)
) -> str:
    root, docs_dir = _root(config), _docs_dir(config)
    page_dir = (docs_dir / page.file.src_uri).parent
    results: dict[str, Any] | None = None

    def figures() -> dict[str, Any]:
        nonlocal results
        if results is None:
            results = json.loads((root / RESULTS).read_text(encoding="utf-8"))
        return results

    def include(arguments: str) -> str:
        path, demote = _include_arguments(arguments)
        included = (root / path).resolve()
        text = included.read_text(encoding="utf-8")

        def relocate(target: str) -> str | None:
            absolute = (included.parent / target).resolve()
            if absolute.is_relative_to(docs_dir):
                site_path = absolute
            else:
                uri = _outside_target(included, target, root, docs_dir)
                if uri is None:
                    return None
                site_path = docs_dir / uri
            return posixpath.relpath(site_path.as_posix(), page_dir.as_posix())

        return demote_headings(rewrite_links(text, relocate), demote)

    def replace(kind: str, arguments: str) -> str:
        try:
            if kind == "include":
                return include(arguments)
            path, spec, unit = [*arguments.split(maxsplit=2), "", ""][:3]
            value = lookup(figures(), path) if kind == "figure" else setting_default(path)
            return render(value, spec, unit)
        except (Missing, OSError, ValueError, TypeError) as exc:
            log.warning(f"{page.file.src_uri}: {kind} {arguments!r}: {type(exc).__name__}: {exc}")
            return f"**[{kind} {arguments}: missing]**"

    return substitute(markdown, replace)


def on_serve(
    server: LiveReloadServer,
    config: MkDocsConfig,
    builder: Callable[[], None],  # noqa: ARG001 (MkDocs passes every argument by name)
) -> None:
    """`make docs`: rebuild when the figures or an included file change."""
    root = _root(config)
    server.watch(str(root / RESULTS))
    for page in Path(config.docs_dir).rglob("*.md"):
        for kind, arguments in placeholders(page.read_text(encoding="utf-8")):
            if kind == "include":
                server.watch(str(root / arguments.split()[0]))
