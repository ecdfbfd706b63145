"""YAML -> plain Python data plus the source line of every key and item.

Validation happens on plain dicts/lists (pydantic), but errors must point at the
line the user wrote.  We compose the YAML node tree ourselves, convert it to data
and remember ``path -> line`` for every mapping key and sequence item, where a path
is a tuple of keys/indices such as ``("model", 0, "nodes", "eps(l)", "latent")``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hiervae.errors import Location, SpecError, display_path

Path_ = tuple[Any, ...]


def format_key(path: Path_) -> str:
    """``("model", 0, "nodes", "eps(l)")`` -> ``model[0].nodes.eps(l)``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


@dataclass
class SourceMap:
    """Lines of a YAML document, looked up by data path (falls back to the nearest parent)."""

    file: str | None
    lines: dict[Path_, int] = field(default_factory=dict)
    overridden: set[Path_] = field(default_factory=set)  # paths set by --set

    def line(self, path: Path_) -> int | None:
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), None)

    def at(self, path: Path_) -> Location:
        path = tuple(path)
        if path and any(o[: len(path)] == path or path[: len(o)] == o for o in self.overridden):
            return Location("--set", None, format_key(path) or None)
        return Location(self.file, self.line(path), format_key(path) or None)


def _to_data(node: yaml.Node, path: Path_, lines: dict[Path_, int], file: str | None) -> Any:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        _LOADER.flatten_mapping(node)  # YAML merge keys: `<<: *anchor`
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = yaml.SafeLoader.construct_object(_LOADER, key_node, deep=True)  # type: ignore[arg-type]
            if isinstance(key, (list, dict)):
                raise SpecError("a mapping key must be a scalar", Location(file, key_node.start_mark.line + 1, format_key(path) or None))
            if key in out:
                raise SpecError(f"duplicate key {key!r}", Location(file, key_node.start_mark.line + 1, format_key(path + (key,))))
            lines[path + (key,)] = key_node.start_mark.line + 1
            out[key] = _to_data(value_node, path + (key,), lines, file)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_to_data(item, path + (i,), lines, file) for i, item in enumerate(node.value)]
    return yaml.SafeLoader.construct_object(_LOADER, node, deep=True)  # type: ignore[arg-type]


_LOADER = yaml.SafeLoader("")


def parse_yaml(text: str, file: str | None = None) -> tuple[Any, SourceMap]:
    """Parse YAML text into data and a :class:`SourceMap`; syntax errors become SpecError."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise SpecError(f"invalid YAML: {problem}", Location(file, line)) from None
    source = SourceMap(file)
    if root is None:
        return None, source
    try:
        return _to_data(root, (), source.lines, file), source
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        raise SpecError(f"invalid YAML: {getattr(err, 'problem', err)}", Location(file, mark.line + 1 if mark else None)) from None


def read_yaml(path: str | Path) -> tuple[Any, SourceMap]:
    shown = display_path(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError("no such file", Location(shown)) from None
    except (OSError, UnicodeDecodeError) as err:
        raise SpecError(f"cannot read spec: {err.__class__.__name__}: {err}", Location(shown)) from None
    return parse_yaml(text, shown)
