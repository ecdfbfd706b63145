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


MAX_KEY_CHARS = 60  # a key longer than this is shortened in messages


def format_key(path: Path_) -> str:
    """``("model", 0, "nodes", "eps(l)")`` -> ``model[0].nodes.eps(l)``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = str(part)
            if len(text) > MAX_KEY_CHARS:
                text = text[: MAX_KEY_CHARS - 3] + "..."
            out += f".{text}" if out else text
    return out


@dataclass
class SourceMap:
    """Lines of a YAML document, looked up by data path (falls back to the nearest parent)."""

    file: str | None
    lines: dict[Path_, int] = field(default_factory=dict)
    overridden: set[Path_] = field(default_factory=set)  # paths set by --set
    files: dict[Path_, str | None] = field(default_factory=dict)  # paths written in another file (extends)

    def _nearest(self, path: Path_) -> Path_ | None:
        path = tuple(path)
        while path:
            if path in self.lines:
                return path
            path = path[:-1]
        return () if () in self.lines else None

    def line(self, path: Path_) -> int | None:
        found = self._nearest(path)
        return None if found is None else self.lines[found]

    def at(self, path: Path_) -> Location:
        path = tuple(path)
        if path and any(o[: len(path)] == path or path[: len(o)] == o for o in self.overridden):
            return Location("--set", None, format_key(path) or None)
        found = self._nearest(path)
        file = self.files.get(found, self.file) if found is not None else self.file
        return Location(file, None if found is None else self.lines[found], format_key(path) or None)


MAX_NODES = 200_000  # YAML nodes after aliases are expanded (a "billion laughs" document stops here)
MAX_DEPTH = 64  # nesting of mappings and sequences
_SCALARS = {"tag:yaml.org,2002:str", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:bool",
            "tag:yaml.org,2002:null"}
_MAP, _SEQ = "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"
MAX_SCALAR_CHARS = 10_000  # one value (a name, a number) may not be longer


class _Converter:
    """Composed YAML nodes -> plain data, within bounds: at most :data:`MAX_NODES` nodes once
    aliases are expanded, at most :data:`MAX_DEPTH` levels, no alias that contains itself,
    only plain scalars (strings, numbers, booleans, null) and plain mappings and lists."""

    def __init__(self, loader: yaml.SafeLoader, lines: dict[Path_, int], file: str | None):
        self.loader, self.lines, self.file = loader, lines, file
        self.count = 0
        self.active: set[int] = set()

    @staticmethod
    def tag(node: yaml.Node) -> str:
        return node.tag.replace("tag:yaml.org,2002:", "!!")

    def where(self, node: yaml.Node, path: Path_) -> Location:
        return Location(self.file, node.start_mark.line + 1, format_key(path) or None)

    def convert(self, node: yaml.Node, path: Path_ = ()) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise SpecError(f"the document expands to more than {MAX_NODES} YAML nodes (aliases expanded); "
                            f"a spec is a few hundred lines", self.where(node, path))
        if len(path) > MAX_DEPTH:
            raise SpecError(f"nested more than {MAX_DEPTH} levels deep", self.where(node, path))
        if id(node) in self.active:
            raise SpecError("an alias refers to a node that contains it (a recursive alias)", self.where(node, path))
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            if node.tag != _SEQ:
                raise SpecError(f"unsupported YAML tag {self.tag(node)}: write a plain list", self.where(node, path))
            self.active.add(id(node))
            try:
                return [self.convert(item, path + (i,)) for i, item in enumerate(node.value)]
            finally:
                self.active.discard(id(node))
        return self._scalar(node, path)

    def _mapping(self, node: yaml.MappingNode, path: Path_) -> dict[Any, Any]:
        if node.tag != _MAP:
            raise SpecError(f"unsupported YAML tag {self.tag(node)}: write a plain mapping", self.where(node, path))
        self.active.add(id(node))
        try:
            self.loader.flatten_mapping(node)  # YAML merge keys: `<<: *anchor`
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    raise SpecError("a mapping key must be a scalar", self.where(key_node, path))
                key = self._scalar(key_node, path)
                if not isinstance(key, (str, int)) or isinstance(key, bool):
                    raise SpecError(f"a mapping key must be a name, got {key!r}", self.where(key_node, path))
                if key in out:
                    raise SpecError(f"duplicate key {key!r}", self.where(key_node, path + (key,)))
                self.lines[path + (key,)] = key_node.start_mark.line + 1
                out[key] = self.convert(value_node, path + (key,))
            return out
        finally:
            self.active.discard(id(node))

    def _scalar(self, node: yaml.Node, path: Path_) -> Any:
        if node.tag not in _SCALARS:
            raise SpecError(f"unsupported YAML tag {self.tag(node)}: values are strings, numbers, booleans or null",
                            self.where(node, path))
        if len(node.value) > MAX_SCALAR_CHARS:
            raise SpecError(f"a value of {len(node.value)} characters (at most {MAX_SCALAR_CHARS})", self.where(node, path))
        try:
            return self.loader.construct_object(node, deep=True)
        except (ValueError, AttributeError, TypeError, yaml.YAMLError) as err:
            raise SpecError(f"cannot read the value {node.value[:40]!r} ({err.__class__.__name__})",
                            self.where(node, path)) from None


def parse_yaml(text: str, file: str | None = None) -> tuple[Any, SourceMap]:
    """Parse YAML text into data and a :class:`SourceMap`; every problem becomes a SpecError.

    A fresh loader per document, so nothing of one document is kept by the next."""
    loader = yaml.SafeLoader(text)
    try:
        try:
            root = loader.get_single_node()
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            line = mark.line + 1 if mark is not None else None
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            raise SpecError(f"invalid YAML: {problem}", Location(file, line)) from None
        except RecursionError:
            raise SpecError(f"nested too deeply to read (at most {MAX_DEPTH} levels)", Location(file)) from None
        source = SourceMap(file)
        if root is None:
            return None, source
        try:
            return _Converter(loader, source.lines, file).convert(root), source
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            raise SpecError(f"invalid YAML: {getattr(err, 'problem', err)}", Location(file, mark.line + 1 if mark else None)) from None
    finally:
        loader.dispose()


def read_yaml(path: str | Path) -> tuple[Any, SourceMap]:
    shown = display_path(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError("no such file", Location(shown)) from None
    except (OSError, UnicodeDecodeError) as err:
        raise SpecError(f"cannot read spec: {err.__class__.__name__}: {err}", Location(shown)) from None
    return parse_yaml(text, shown)
