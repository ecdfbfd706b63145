"""Spec inheritance and addressing by name: ``extends: base.yaml`` and ``--set model.x.net=...``.

A spec that says ``extends: base.yaml`` (a path relative to its own file) is laid over the
base document:

* mappings merge key by key (``train: {epochs: 10}`` changes one key); a value ``null``
  removes a key; any other value replaces the base's;
* ``model:`` and ``guide:`` as a *mapping* patch the base's entries by name,
  ``guide: {eps(l): {given: [x, z1..z(l-1)]}}``: a name is a node or factor as written, the
  key of a top-level entry or of a ``for`` block's ``nodes``/``factors``; the patch merges
  into that entry as above.  As a *list* they replace the base's section whole.

Every key keeps the line of the file that wrote it, so an error in an inherited key points
into the base.  ``--set`` paths may name entries the same way (``model.x.net.mlp=[64]``,
``guide.eps(l).given=[x]``) as well as by position (``model.1.x``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hiervae.errors import Location, SpecError
from hiervae.language.yaml_source import Path_, SourceMap, read_yaml

MAX_EXTENDS = 8  # a chain of bases at most this long
SECTIONS = {"model": "nodes", "guide": "factors"}


def entry_path(items: Any, name: str, section: str) -> Path_ | None:
    """The path (below ``section``) of the entry called ``name``: ``(i, name)`` for a
    top-level entry, ``(i, "nodes" | "factors", name)`` inside a ``for`` block."""
    if not isinstance(items, list):
        return None
    for i, entry in enumerate(items):
        if not isinstance(entry, dict):
            continue
        if "for" in entry:
            body = entry.get(SECTIONS[section])
            if isinstance(body, dict) and name in body:
                return (i, SECTIONS[section], name)
        elif name in entry:
            return (i, name)
    return None


def entry_names(items: Any, section: str) -> list[str]:
    names: list[str] = []
    for entry in items if isinstance(items, list) else []:
        if isinstance(entry, dict):
            body = entry.get(SECTIONS[section]) if "for" in entry else entry
            names += [str(k) for k in (body or {}) if k != "for"] if isinstance(body, dict) else []
    return names


def resolve_extends(data: Any, source: SourceMap, chain: tuple[str, ...] = ()) -> tuple[Any, SourceMap]:
    """``data`` laid over the spec it extends (recursively), with one source map for both."""
    if not isinstance(data, dict) or "extends" not in data:
        return data, source
    ref = data["extends"]
    where = source.at(("extends",))
    if not isinstance(ref, str) or not ref:
        raise SpecError("extends names a spec file (a path relative to this one)", where)
    base_dir = Path(source.file).parent if source.file and not source.file.startswith("<") else Path(".")
    path = base_dir / ref
    key = str(path.resolve())
    if key in chain or len(chain) >= MAX_EXTENDS:
        raise SpecError(f"extends {ref!r}: specs extend each other in a cycle" if key in chain else
                        f"extends {ref!r}: a chain of more than {MAX_EXTENDS} bases", where)
    if not path.is_file():
        raise SpecError(f"extends {ref!r}: no such file", where)
    base, base_source = read_yaml(path)
    if not isinstance(base, dict):
        raise SpecError(f"extends {ref!r}: not a spec (a mapping)", where)
    base, base_source = resolve_extends(base, base_source, chain + (key,))
    merged = SourceMap(source.file)
    for p, line in base_source.lines.items():  # the base's keys keep the base's lines
        merged.lines[p] = line
        merged.files[p] = base_source.files.get(p, base_source.file)
    overlay = {k: v for k, v in data.items() if k != "extends"}
    _merge(base, overlay, (), (), source, merged)
    return base, merged


def _record(source: SourceMap, merged: SourceMap, src: Path_, dst: Path_, value: Any) -> None:
    """The overlay's lines for ``value`` (written at ``src`` in the overlay) now at ``dst``."""
    for p, line in source.lines.items():
        if p[: len(src)] == src:
            merged.lines[dst + p[len(src):]] = line
            merged.files[dst + p[len(src):]] = source.file


def _forget(merged: SourceMap, dst: Path_) -> None:
    for p in [p for p in merged.lines if p[: len(dst)] == dst and len(p) > len(dst)]:
        del merged.lines[p]
        merged.files.pop(p, None)


def _merge(base: dict, overlay: dict, src: Path_, dst: Path_, source: SourceMap, merged: SourceMap) -> None:
    for key, value in overlay.items():
        s, d = src + (key,), dst + (key,)
        if not dst and key in SECTIONS and isinstance(value, dict):
            _patch_section(base, key, value, source, merged)
        elif value is None:
            base.pop(key, None)
            _forget(merged, d)
        elif isinstance(value, dict) and isinstance(base.get(key), dict):
            merged.lines[d], merged.files[d] = source.lines.get(s, merged.lines.get(d)), source.file
            _merge(base[key], value, s, d, source, merged)
        else:
            base[key] = value
            _forget(merged, d)
            _record(source, merged, s, d, value)


def _patch_section(base: dict, section: str, patches: dict, source: SourceMap, merged: SourceMap) -> None:
    items = base.get(section)
    for name, patch in patches.items():
        where = source.at((section, name))
        found = entry_path(items, str(name), section)
        if found is None:
            known = ", ".join(entry_names(items, section)) or "none"
            raise SpecError(f"the base spec has no {section} entry {name!r} to patch (entries: {known}); to add or "
                            f"reorder entries, give `{section}:` as a list (it replaces the base's)", where)
        if not isinstance(patch, dict):
            raise SpecError(f"a patch of {section} entry {name!r} is a mapping of the keys it changes", where)
        target = items
        for part in found:
            target = target[part]
        _merge(target, patch, (section, name), (section, *found), source, merged)


def named_path(data: Any, parts: list[Any], key: str) -> list[Any]:
    """``--set`` parts with entry names resolved to positions: ``model.x.net`` ->
    ``model.1.x.net``, ``guide.eps(l).given`` -> ``guide.0.factors.eps(l).given``."""
    if len(parts) >= 2 and parts[0] in SECTIONS and isinstance(parts[1], str) and isinstance(data, dict):
        found = entry_path(data.get(parts[0]), parts[1], parts[0])
        if found is None:
            known = ", ".join(entry_names(data.get(parts[0]), parts[0])) or "none"
            raise SpecError(f"no {parts[0]} entry {parts[1]!r} (entries: {known})", Location("--set", key=key))
        return [parts[0], *found, *parts[2:]]
    return parts
