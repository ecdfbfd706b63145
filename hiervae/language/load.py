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

import hiervae.language.schema as S
from hiervae.errors import Location, SpecError
from hiervae.language.inherit import named_path, resolve_extends
from hiervae.language.net import Net
from hiervae.language.templates import Reference, TemplateError, expand_references, parse_loop, substitute
from hiervae.language.yaml_source import SourceMap, format_key, parse_yaml, read_yaml


@dataclass(frozen=True)
class _Declared:
    """Where a declaration was written: ``at("given")`` is the location of its ``given`` key,
    with the loop binding (``l=3``) appended so errors inside loops name the iteration."""

    source: SourceMap = field(repr=False)
    path: tuple[Any, ...]
    binding: str
    env: dict[str, int] = field(default_factory=dict, repr=False)  # the template environment it was expanded in

    def at(self, *sub: Any) -> Location:
        loc = self.source.at(self.path + sub)
        return loc.with_key(f"{loc.key} ({self.binding})") if self.binding else loc

    @property
    def location(self) -> Location:
        return self.at()


@dataclass(frozen=True)
class NodeDecl(_Declared):
    """One concrete model node."""

    name: str = ""
    kind: str = ""  # "latent" | "transform" | "observed"
    spec: Any = None  # LatentNodeSpec | TransformNodeSpec | ObservedNodeSpec
    given: tuple[Reference, ...] = ()
    input: str | None = None
    net: Net | None = None


@dataclass(frozen=True)
class FeatureDecl(_Declared):
    """One concrete guide feature node: features of the data (and of earlier samples)."""

    name: str = ""
    spec: Any = None  # FeatureNodeSpec
    given: tuple[Reference, ...] = ()
    net: Net | None = None


@dataclass(frozen=True)
class FactorDecl(_Declared):
    """One concrete guide factor q(latent | given)."""

    latent: str = ""
    spec: Any = None  # GuideFactorSpec
    given: tuple[Reference, ...] = ()
    encoders: dict[str, Net] = field(default_factory=dict)
    encoder_keys: dict[str, str] = field(default_factory=dict)  # concrete name -> key as written
    net: Net | None = None


@dataclass(frozen=True)
class Spec:
    """A validated, expanded spec."""

    document: S.SpecDocument
    nodes: tuple[NodeDecl, ...]
    guide: tuple["FactorDecl | FeatureDecl", ...]  # in the guide's order
    source: SourceMap
    data: dict[str, Any] = field(repr=False)  # the document as data, overrides applied

    @property
    def name(self) -> str:
        return self.document.name

    def resolved_yaml(self, data_section: dict[str, Any] | None = None) -> str:
        """The spec as it was used (overrides applied), for saving in a run directory;
        ``data_section`` replaces its ``data:`` (a user's file paths made absolute)."""
        doc = self.data if data_section is None else {**self.data, "data": data_section}
        return yaml.safe_dump(doc, sort_keys=False)

    @property
    def directory(self) -> Path | None:
        """The directory of the spec's file (relative data paths start there); None for text."""
        file = self.source.file
        return None if not file or file.startswith("<") else Path(file).parent


# ------------------------------------------------------------------ overrides
def apply_overrides(data: dict[str, Any], overrides: Iterable[str], source: SourceMap | None = None) -> dict[str, Any]:
    """Apply ``key.path=value`` overrides (value parsed as YAML) to the document data;
    errors below an overridden key are then reported at ``--set``, not at a file line."""
    for item in overrides:
        if "=" not in item:
            raise SpecError(f"expected KEY=VALUE, got {item!r}", Location("--set"))
        key, text = item.split("=", 1)
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            raise SpecError(f"cannot parse value {text!r}", Location("--set", key=key)) from None
        parts: list[Any] = [int(p) if p.isdigit() else p for p in key.strip().split(".")]
        parts = named_path(data, parts, key)
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
        if source is not None:
            source.overridden.add(tuple(parts))
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
        # Unions report one error per branch; the one that reaches deepest into the data
        # is the branch the user meant (a dict meant as NetworkSpec, not as a name).
        errors = [(_data_path(value, e["loc"]), i, e) for i, e in enumerate(err.errors())]
        rank = {"extra_forbidden": 2, "missing": 1}  # a misspelt key is both: name the unknown one
        loc, _, first = max(errors, key=lambda t: (len(t[0]) + (t[2]["type"] in rank), _branch_matches(value, t[2]["loc"]),
                                                   rank.get(t[2]["type"], 0), -t[1]))
        kind = first["type"]
        if kind == "extra_forbidden":
            allowed = _allowed_keys(model, tuple(first["loc"][:-1]))
            message = f"unknown key {loc[-1]!r}" + (f" (allowed: {', '.join(allowed)})" if allowed else "")
        elif kind == "missing":
            message = f"missing required key {first['loc'][-1]!r}"
        else:
            message = first["msg"]
            if "input" in first and not isinstance(first["input"], (dict, list)):
                message += f" (got {first['input']!r})"
        raise SpecError(message, source.at(path + loc)) from None


def _data_path(value: Any, loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """The part of a pydantic error location that indexes the data (drops branch tags)."""
    out: list[Any] = []
    for part in loc:
        if isinstance(value, dict) and part in value:
            value = value[part]
            out.append(part)
        elif isinstance(value, list) and isinstance(part, int) and 0 <= part < len(value):
            value = value[part]
            out.append(part)
        elif isinstance(value, dict) and isinstance(part, str) and part in {v for v in value.values() if isinstance(v, str)}:
            continue  # a discriminated union's tag (kl_warmup's `schedule: linear`), not a key
        elif isinstance(value, dict) and isinstance(part, str) and part not in _branch_tags(part):
            out.append(part)  # a key that is not there (unknown or missing): keep it, stop
            break
    return tuple(out)


def _branch_matches(value: Any, loc: tuple[Any, ...]) -> bool:
    """Does the error's union branch have the type of the data it failed on (a list given
    for `latent` failed in the list branch, not the int branch)?"""
    for part in loc:
        if isinstance(part, str) and _branch_tags(part):
            kind = {list: "list[", dict: "", str: "str"}.get(type(value))
            if kind is None:
                return False
            return part.startswith(kind) if kind else part[:1].isupper()
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and isinstance(part, int) and 0 <= part < len(value):
            value = value[part]
    return False


def _branch_tags(part: str) -> set[str]:
    # pydantic branch labels look like type names: 'str', 'NetworkSpec', 'list[...]', 'constrained-int'
    return {part} if (part[:1].isupper() or "[" in part or "-" in part or part in {"str", "int", "float", "bool"}) else set()


def _allowed_keys(model: Any, loc: tuple[Any, ...]) -> list[str]:
    """Field names of the (sub)model that the data path ``loc`` leads to, for messages."""
    import typing

    current: Any = model
    for part in loc:
        current = _unwrap_model(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            fields = {f.alias or n: f for n, f in current.model_fields.items()}
            if part not in fields:
                return []
            current = fields[part].annotation
        else:
            tagged = _tagged_member(current, part)  # a discriminated union's tag picks its member
            if tagged is not None:
                current = tagged
                continue
            args = typing.get_args(current)
            current = args[-1] if args else None
    current = _unwrap_model(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [f.alias or n for n, f in current.model_fields.items()]
    return []


def _tagged_member(annotation: Any, tag: Any) -> Any:
    """The member of a (discriminated) union whose Literal field equals ``tag``, or None."""
    import typing

    def members(a: Any):
        for arg in typing.get_args(a):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                yield arg
            else:
                yield from members(arg)

    for model in members(annotation):
        for f in model.model_fields.values():
            if typing.get_origin(f.annotation) is typing.Literal and tag in typing.get_args(f.annotation):
                return model
    return None


def _unwrap_model(annotation: Any) -> Any:
    """A BaseModel inside Optional/Union/Annotated, if there is exactly one kind to pick."""
    import typing

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    args = typing.get_args(annotation)
    models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
    if len(models) == 1 and typing.get_origin(annotation) is not dict and typing.get_origin(annotation) is not list:
        return models[0]
    if typing.get_origin(annotation) is typing.Annotated:
        return _unwrap_model(args[0])
    return annotation


def _kind_of(node: Any, source: SourceMap, path: tuple[Any, ...]) -> str:
    if not isinstance(node, dict):
        raise SpecError("a node must be a mapping with one of latent/transform/observed/feature", source.at(path))
    kinds = [k for k in S.NODE_KINDS if k in node]
    if len(kinds) != 1:
        what = "none" if not kinds else " and ".join(kinds)
        raise SpecError(f"a node declares exactly one of latent/transform/observed/feature (found {what})", source.at(path))
    return kinds[0]


FEATURE = "feature"


# ------------------------------------------------------------------ networks
class _Networks:
    """Resolves ``net:`` references (a template's name, an inline network, ``extends``) to a
    :class:`Net`, remembering the line of every key that was written."""

    def __init__(self, templates: dict[str, S.NetworkSpec], source: SourceMap):
        self.templates = templates
        self.source = source

    def resolve(self, ref: S.NetRef | None, path: tuple[Any, ...]) -> Net | None:
        if ref is None:
            return None
        values, where, origin = self._written(ref, path, ())
        shared = ref if isinstance(ref, str) and self.templates[ref].shared else None
        return Net.from_written(values, where, shared=shared, templates=origin)

    def _written(self, ref: S.NetRef, path: tuple[Any, ...], seen: tuple[str, ...]):
        """(values, locations, template of origin) of every key written for ``ref``."""
        if isinstance(ref, str):
            if ref not in self.templates:
                known = ", ".join(sorted(self.templates)) or "none"
                raise SpecError(f"unknown network {ref!r} (templates: {known})", self.source.at(path))
            if ref in seen:
                raise SpecError(f"network templates extend each other in a cycle: {' -> '.join(seen + (ref,))}", self.source.at(("networks", ref)))
            return self._written(self.templates[ref], ("networks", ref), seen + (ref,))
        values: dict[str, Any] = {}
        where: dict[str, Location] = {}
        origin: dict[str, str] = {}
        if ref.extends is not None:
            values, where, origin = self._written(ref.extends, path + ("extends",), seen)
        own = ref.model_dump(exclude_none=True, exclude={"extends", "shared"})
        if ("mlp" in own and "resnet" in values) or ("resnet" in own and "mlp" in values):
            for key in ("mlp", "resnet"):  # the written kind replaces the template's
                for d in (values, where, origin):
                    d.pop(key, None)
        values.update(own)
        where.update({key: self.source.at(path + (key,)) for key in own})
        template = seen[-1] if seen and path == ("networks", seen[-1]) else ""
        origin.update({key: template for key in own})
        if "mlp" in values and "resnet" in values:
            raise SpecError("a network is either convolutional (resnet) or an mlp, not both", where["resnet"])
        return values, where, origin


# ------------------------------------------------------------------ expansion
MAX_DECLARATIONS = 20_000  # concrete nodes (or guide factors) a spec may expand to
def _entries(
    items: list[Any], section: str, body_key: str, env0: dict[str, int], source: SourceMap
) -> Iterator[tuple[str, Any, dict[str, int], range | None, tuple[Any, ...], str]]:
    """Yield (name, raw declaration, template env, loop range, source path, binding) per item
    (at most :data:`MAX_DECLARATIONS` per section)."""
    count = 0
    for name, decl, env, loop, path, binding in _raw_entries(items, section, body_key, env0, source):
        count += 1
        if count > MAX_DECLARATIONS:
            raise SpecError(f"{section} expands to more than {MAX_DECLARATIONS} declarations", source.at(path))
        yield name, decl, env, loop, path, binding


def _raw_entries(
    items: list[Any], section: str, body_key: str, env0: dict[str, int], source: SourceMap
) -> Iterator[tuple[str, Any, dict[str, int], range | None, tuple[Any, ...], str]]:
    for i, entry in enumerate(items):
        path: tuple[Any, ...] = (section, i)
        if not isinstance(entry, dict):
            raise SpecError(f"each {section} entry is a mapping of names or a `for` block", source.at(path))
        if "for" in entry:
            header = entry["for"]
            try:
                var, values = parse_loop(header, env0) if isinstance(header, str) else (None, None)
            except TemplateError as err:
                raise SpecError(str(err), source.at(path + ("for",))) from None
            other = "factors" if body_key == "nodes" else "nodes"
            if other in entry:
                raise SpecError(f"a `for` block in {section} lists `{body_key}`, not `{other}`", source.at(path + (other,)))
            _validate(S.LoopSpec, entry, source, path)
            body = entry.get(body_key)
            if body is None:
                raise SpecError(f"a `for` block in {section} needs `{body_key}`", source.at(path))
            for value in values:
                env = {**env0, var: value}
                for raw_name, decl in body.items():
                    yield raw_name, decl, env, values, path + (body_key, raw_name), f"{var}={value}"
        else:
            for raw_name, decl in entry.items():
                yield raw_name, decl, env0, None, path + (raw_name,), ""


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


def build_spec(data: Any, source: SourceMap) -> Spec:
    document = _validate(S.SpecDocument, data, source, ())
    nets = _Networks(document.networks, source)
    for name in document.networks:  # validate every template, used or not
        nets.resolve(name, ("networks", name))
    env0 = dict(document.vars)

    nodes: list[NodeDecl] = []
    for raw_name, decl, env, loop, path, binding in _entries(data["model"], "model", "nodes", env0, source):
        kind = _kind_of(decl, source, path)
        spec = _validate(S.NODE_KINDS[kind], decl, source, path)
        if kind == FEATURE:  # a model feature is a transform of kind `feature` (deterministic, not bijective)
            kind, spec = "transform", S.TransformNodeSpec(transform=FEATURE, given=spec.given, dim=spec.feature, net=spec.net)
        raw_input = getattr(spec, "input", None)
        nodes.append(
            NodeDecl(
                source=source,
                path=path,
                binding=binding, env=env,
                name=_name(raw_name, env, source, path),
                kind=kind,
                spec=spec,
                given=_refs(spec.given, env, loop, source, path + ("given",)),
                input=_name(raw_input, env, source, path + ("input",)) if raw_input else None,
                net=nets.resolve(_sub(spec.net, env, source, path + ("net",)), path + ("net",)),
            )
        )

    factors: list[FactorDecl | FeatureDecl] = []
    for raw_name, decl, env, loop, path, binding in _entries(data.get("guide") or [], "guide", "factors", env0, source):
        if isinstance(decl, dict) and FEATURE in decl:
            spec = _validate(S.FeatureNodeSpec, decl, source, path)
            factors.append(FeatureDecl(
                source=source, path=path, binding=binding, env=env, name=_name(raw_name, env, source, path), spec=spec,
                given=_refs(spec.given, env, loop, source, path + ("given",)),
                net=nets.resolve(_sub(spec.net, env, source, path + ("net",)), path + ("net",))))
            continue
        spec = _validate(S.GuideFactorSpec, decl, source, path)
        # A key names one node or a range of them (`z1..z(l-1)`: one encoder per node, each
        # its own network, as if the key were written once per node; an empty range names none).
        encoder_keys = {ref.name: k for k in spec.encoders for ref in _refs([k], env, loop, source, path + ("encoders", k))}
        encoders = {
            c: nets.resolve(_sub(spec.encoders[k], env, source, path + ("encoders", k)), path + ("encoders", k))
            for c, k in encoder_keys.items()
        }
        given = _refs(spec.given, env, loop, source, path + ("given",))
        factors.append(
            FactorDecl(
                source=source,
                path=path,
                binding=binding, env=env,
                latent=_name(raw_name, env, source, path),
                spec=spec,
                given=given,
                encoders=encoders,
                encoder_keys=encoder_keys,
                net=nets.resolve(_sub(spec.net, env, source, path + ("net",)), path + ("net",)),
            )
        )
    return Spec(document=document, nodes=tuple(nodes), guide=tuple(factors), source=source, data=data)


def load_spec(path: str | Path, overrides: Iterable[str] = ()) -> Spec:
    """Read, override, validate and expand a spec file."""
    return _from_data(*read_yaml(path), overrides)


def parse_spec(text: str, file: str = "<string>", overrides: Iterable[str] = ()) -> Spec:
    """Like :func:`load_spec` for text (tests, notebooks)."""
    return _from_data(*parse_yaml(text, file), overrides)


def _from_data(data: Any, source: SourceMap, overrides: Iterable[str]) -> Spec:
    if data is None:
        raise SpecError("the spec is empty", Location(source.file))
    if not isinstance(data, dict):
        raise SpecError("a spec is a mapping (name, model, guide, ...)", source.at(()))
    data, source = resolve_extends(data, source)
    return build_spec(apply_overrides(data, overrides, source), source)
