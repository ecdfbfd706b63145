"""Spec file -> :class:`Spec`: parse, apply ``--set`` overrides, validate, expand loops.

The result is flat and concrete (one declaration per node and per guide factor, every
network template resolved) and remembers where each declaration was written, so the
graph builder can report graph-level errors (dangling references, cycles, guide order)
with file, line and key too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import yaml
from pydantic import BaseModel, ValidationError

from hiervae.errors import Location, SpecError
from hiervae.spec import schema as S
from hiervae.spec.templates import Reference, TemplateError, expand_references, parse_loop, substitute
from hiervae.spec.yaml_source import SourceMap, format_key, parse_yaml, read_yaml


@dataclass(frozen=True)
class NodeDecl:
    """One concrete model node."""

    name: str
    kind: str  # "latent" | "transform" | "observed"
    spec: S.LatentNodeSpec | S.TransformNodeSpec | S.ObservedNodeSpec
    given: tuple[Reference, ...]
    input: str | None
    net: S.NetworkSpec | None
    location: Location


@dataclass(frozen=True)
class FactorDecl:
    """One concrete guide factor q(latent | given)."""

    latent: str
    spec: S.GuideFactorSpec
    given: tuple[Reference, ...]
    encoders: dict[str, S.NetworkSpec]
    net: S.NetworkSpec | None
    location: Location


@dataclass(frozen=True)
class Spec:
    """A validated, expanded spec."""

    document: S.SpecDocument
    nodes: tuple[NodeDecl, ...]
    guide: tuple[FactorDecl, ...]
    source: SourceMap
    data: dict[str, Any] = field(repr=False)  # the document as data, overrides applied

    @property
    def name(self) -> str:
        return self.document.name

    def resolved_yaml(self) -> str:
        """The spec as it was used (overrides applied), for saving in a run directory."""
        return yaml.safe_dump(self.data, sort_keys=False)


# ------------------------------------------------------------------ overrides
def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply ``key.path=value`` overrides (value parsed as YAML) to the document data."""
    for item in overrides:
        if "=" not in item:
            raise SpecError(f"--set expects KEY=VALUE, got {item!r}", Location("--set"))
        key, text = item.split("=", 1)
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            raise SpecError(f"cannot parse value {text!r}", Location("--set", key=key)) from None
        parts: list[Any] = [int(p) if p.isdigit() else p for p in key.strip().split(".")]
        target: Any = data
        for i, part in enumerate(parts[:-1]):
            try:
                target = target[part]
            except (KeyError, IndexError, TypeError):
                if isinstance(target, dict) and isinstance(part, str):
                    target = target.setdefault(part, {})
                else:
                    raise SpecError("no such key to override", Location("--set", key=format_key(tuple(parts[: i + 1])))) from None
        last = parts[-1]
        if isinstance(target, list) and isinstance(last, int) and last < len(target):
            target[last] = value
        elif isinstance(target, dict):
            target[last] = value
        else:
            raise SpecError("no such key to override", Location("--set", key=key))
    return data


# ------------------------------------------------------------------ validation
def _validate(model: type[BaseModel], value: Any, source: SourceMap, path: tuple[Any, ...]) -> Any:
    try:
        return model.model_validate(value)
    except ValidationError as err:
        first = err.errors()[0]
        loc = tuple(p for p in first["loc"] if not (isinstance(p, str) and p in _UNION_TAGS))
        full = path + loc
        kind = first["type"]
        if kind == "extra_forbidden":
            allowed = ", ".join(f.alias or n for n, f in model.model_fields.items()) if len(loc) == 1 else None
            message = f"unknown key {loc[-1]!r}" + (f" (allowed: {allowed})" if allowed else "")
        elif kind == "missing":
            message = f"missing required key {loc[-1]!r}"
        else:
            message = first["msg"]
            if "input" in first and not isinstance(first["input"], (dict, list)):
                message += f" (got {first['input']!r})"
        raise SpecError(message, source.at(full)) from None


_UNION_TAGS = {"str", "NetworkSpec", "int", "list[int]", "geometric", "linear", "constant", "function-after[_not_empty(), SpecDocument]"}


def _kind_of(node: Any, source: SourceMap, path: tuple[Any, ...]) -> str:
    if not isinstance(node, dict):
        raise SpecError("a node must be a mapping with one of latent/transform/observed", source.at(path))
    kinds = [k for k in S.NODE_KINDS if k in node]
    if len(kinds) != 1:
        what = "none" if not kinds else " and ".join(kinds)
        raise SpecError(f"a node declares exactly one of latent/transform/observed (found {what})", source.at(path))
    return kinds[0]


# ------------------------------------------------------------------ networks
class _Networks:
    def __init__(self, templates: dict[str, S.NetworkSpec], source: SourceMap):
        self.templates = templates
        self.source = source

    def resolve(self, ref: S.NetRef | None, path: tuple[Any, ...], seen: tuple[str, ...] = ()) -> S.NetworkSpec | None:
        if ref is None:
            return None
        if isinstance(ref, str):
            if ref not in self.templates:
                known = ", ".join(sorted(self.templates)) or "none"
                raise SpecError(f"unknown network {ref!r} (templates: {known})", self.source.at(path))
            if ref in seen:
                raise SpecError(f"network templates extend each other in a cycle: {' -> '.join(seen + (ref,))}", self.source.at(("networks", ref)))
            return self.resolve(self.templates[ref], ("networks", ref), seen + (ref,))
        if ref.extends is None:
            return ref
        base = self.resolve(ref.extends, path + ("extends",), seen)
        assert base is not None
        merged = {**base.model_dump(exclude_none=True), **ref.model_dump(exclude_none=True, exclude={"extends"})}
        return S.NetworkSpec.model_validate(merged)


# ------------------------------------------------------------------ expansion
def _entries(
    items: list[Any], section: str, body_key: str, env0: dict[str, int], source: SourceMap
) -> Iterator[tuple[str, Any, dict[str, int], range | None, tuple[Any, ...]]]:
    """Yield (name, raw declaration, template env, loop range, source path) per concrete item."""
    for i, entry in enumerate(items):
        path: tuple[Any, ...] = (section, i)
        if not isinstance(entry, dict):
            raise SpecError(f"each {section} entry is a mapping of names or a `for` block", source.at(path))
        if "for" in entry:
            loop = _validate(S.LoopSpec, entry, source, path)
            body = entry.get(body_key)
            if body is None:
                raise SpecError(f"a `for` block in {section} needs `{body_key}`", source.at(path))
            try:
                var, values = parse_loop(loop.for_, env0)
            except TemplateError as err:
                raise SpecError(str(err), source.at(path + ("for",))) from None
            for value in values:
                env = {**env0, var: value}
                for raw_name, decl in body.items():
                    yield raw_name, decl, env, values, path + (body_key, raw_name)
        else:
            for raw_name, decl in entry.items():
                yield raw_name, decl, env0, None, path + (raw_name,)


def _name(raw: str, env: dict[str, int], source: SourceMap, path: tuple[Any, ...]) -> str:
    name = _sub(str(raw), env, source, path)
    if not name.replace("_", "a").isalnum() or name[0].isdigit():
        raise SpecError(f"node names are identifiers (letters, digits, _), got {name!r}", source.at(path))
    return name


def _sub(value: Any, env: dict[str, int], source: SourceMap, path: tuple[Any, ...]) -> Any:
    """Substitute templates in a string reference (network names may be templated too)."""
    if not isinstance(value, str):
        return value
    try:
        return substitute(value, env)
    except TemplateError as err:
        raise SpecError(str(err), source.at(path)) from None


def _refs(items: list[str], env: dict[str, int], loop: range | None, source: SourceMap, path: tuple[Any, ...]) -> tuple[Reference, ...]:
    try:
        return tuple(expand_references(items, env, loop))
    except TemplateError as err:
        raise SpecError(str(err), source.at(path)) from None


def _where(source: SourceMap, path: tuple[Any, ...], env: dict[str, int], loop_env: dict[str, int]) -> Location:
    loc = source.at(path)
    bound = {k: v for k, v in env.items() if k not in loop_env}
    if bound:
        loc = loc.with_key(f"{loc.key} ({', '.join(f'{k}={v}' for k, v in bound.items())})")
    return loc


def build_spec(data: Any, source: SourceMap) -> Spec:
    document = _validate(S.SpecDocument, data, source, ())
    nets = _Networks(document.networks, source)
    for name, template in document.networks.items():
        nets.resolve(name, ("networks", name))
    env0 = dict(document.vars)

    nodes: list[NodeDecl] = []
    for raw_name, decl, env, loop, path in _entries(data["model"], "model", "nodes", env0, source):
        kind = _kind_of(decl, source, path)
        spec = _validate(S.NODE_KINDS[kind], decl, source, path)
        raw_input = getattr(spec, "input", None)
        nodes.append(
            NodeDecl(
                name=_name(raw_name, env, source, path),
                kind=kind,
                spec=spec,
                given=_refs(spec.given, env, loop, source, path + ("given",)),
                input=_name(raw_input, env, source, path + ("input",)) if raw_input else None,
                net=nets.resolve(_sub(spec.net, env, source, path + ("net",)), path + ("net",)),
                location=_where(source, path, env, env0),
            )
        )

    factors: list[FactorDecl] = []
    for raw_name, decl, env, loop, path in _entries(data.get("guide") or [], "guide", "factors", env0, source):
        spec = _validate(S.GuideFactorSpec, decl, source, path)
        encoders_raw = {
            _sub(k, env, source, path + ("encoders", k)): _sub(v, env, source, path + ("encoders", k)) for k, v in spec.encoders.items()
        }
        given = _refs(spec.given, env, loop, source, path + ("given",))
        encoders = {}
        for key, ref in encoders_raw.items():
            net = nets.resolve(ref, path + ("encoders", key))
            assert net is not None
            encoders[key] = net
        factors.append(
            FactorDecl(
                latent=_name(raw_name, env, source, path),
                spec=spec,
                given=given,
                encoders=encoders,
                net=nets.resolve(_sub(spec.net, env, source, path + ("net",)), path + ("net",)),
                location=_where(source, path, env, env0),
            )
        )
    return Spec(document=document, nodes=tuple(nodes), guide=tuple(factors), source=source, data=data)


def load_spec(path: str | Path, overrides: Iterable[str] = ()) -> Spec:
    """Read, override, validate and expand a spec file."""
    data, source = read_yaml(path)
    if data is None:
        raise SpecError("the spec is empty", source.at(()))
    if not isinstance(data, dict):
        raise SpecError("a spec is a mapping (name, model, guide, ...)", source.at(()))
    return build_spec(apply_overrides(data, overrides), source)


def parse_spec(text: str, file: str = "<string>", overrides: Iterable[str] = ()) -> Spec:
    """Like :func:`load_spec` for text (tests, notebooks)."""
    data, source = parse_yaml(text, file)
    if not isinstance(data, dict):
        raise SpecError("a spec is a mapping (name, model, guide, ...)", source.at(()))
    return build_spec(apply_overrides(data, overrides), source)
