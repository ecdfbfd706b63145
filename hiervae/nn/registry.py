"""The registries the graph builder and the compiler look names up in, and their contracts.

Three registries, one per kind of thing a spec names:

* :data:`FAMILIES` -- distributions of latent and observed nodes (``dist:``), subclasses of
  :class:`Family`;
* :data:`TRANSFORMS` -- deterministic nodes (``transform:``), subclasses of
  :class:`TransformModule`;
* :data:`NETWORKS` -- network kinds (``mlp:``, ``resnet:`` in a network), subclasses of
  :class:`NetworkKind`.

A family or transform is one module that registers one class.  The class states, as
class attributes, every fact the graph builder, the checker and the compiler need about it
(its roles, whether it is reparameterised, what it merges and has a closed-form KL with,
which network keys it reads), and its constructor's keyword arguments are its ``options``,
typed and validated before anything is built (:meth:`Configurable.validate_options`)::

    cls = FAMILIES.get("normal")
    module = cls.from_config(dim, context_features, options, net, filled)
"""

from __future__ import annotations

import functools
import inspect
import typing
from typing import Any, ClassVar, Mapping

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from hiervae.language.net import Net
from hiervae.registry import Registry

FAMILIES: Registry[type["Family"]] = Registry("family")
TRANSFORMS: Registry[type["TransformModule"]] = Registry("transform")
NETWORKS: Registry[type["NetworkKind"]] = Registry("network kind")

FILLED = ("event_shape", "evidence", "networks")
"""Constructor arguments the compiler fills from the graph, never written in a spec: the
observed node's shape (image decoders), the evidence slice of a guide factor's context and
the program's network builder (shared instances)."""


class Configurable:
    """Mixin of registered classes: ``__init__(self, dim, context_features, net=None, **options)``.

    Options are keyword arguments with defaults and type annotations (``Annotated`` with
    pydantic ``Field`` constraints where a range matters); :meth:`validate_options`
    checks spec values against them strictly (``rank: "a"``, ``rank: -1`` and unknown
    names are one-line errors).  A registered variant pins some options in
    ``fixed_options``; they are then not options of the variant.

    Network consumers state which network keys they read (``net_keys``), which network
    kinds they accept (``net_kinds``) and their defaults (``net_defaults``); the ``net``
    they receive is the spec's laid over those defaults.
    """

    fixed_options: ClassVar[dict[str, Any]] = {}
    net_keys: ClassVar[frozenset[str]] = frozenset()
    net_kinds: ClassVar[frozenset[str]] = frozenset({"mlp"})
    net_defaults: ClassVar[Net] = Net()

    @classmethod
    def options(cls) -> dict[str, Any]:
        """Option name -> default, read from the constructor signature."""
        return {name: p.default for name, p in cls._parameters().items()}

    @classmethod
    def _parameters(cls) -> dict[str, inspect.Parameter]:
        params = list(inspect.signature(cls).parameters.values())[2:]
        return {p.name: p for p in params
                if p.name not in cls.fixed_options and p.name not in FILLED and p.name != "net"
                and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}

    @classmethod
    @functools.cache
    def _option_model(cls) -> type[BaseModel]:
        init = next(vars(c)["__init__"] for c in cls.__mro__ if inspect.isfunction(vars(c).get("__init__")))
        hints = typing.get_type_hints(init, include_extras=True)
        fields = {name: (hints.get(name, Any), p.default) for name, p in cls._parameters().items()}
        return create_model(f"{cls.__name__}Options", __config__=ConfigDict(extra="forbid", strict=True, allow_inf_nan=False), **fields)

    @classmethod
    def validate_options(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        """``options`` checked against the constructor's types; ValueError naming the first bad one."""
        try:
            cls._option_model().model_validate(dict(options))
        except ValidationError as err:
            first = err.errors()[0]
            name = first["loc"][0] if first["loc"] else "?"
            if first["type"] == "extra_forbidden":
                known = ", ".join(cls.options()) or "none"
                raise ValueError(f"unknown option {name!r} (known: {known})") from None
            got = first.get("input")
            raise ValueError(f"option {name!r}: {first['msg'].lower()} (got {got!r})") from None
        return dict(options)

    @classmethod
    def from_config(cls, dim: int, context_features: int, options: Mapping[str, Any] | None = None,
                    net: Net | None = None, filled: Mapping[str, Any] | None = None):
        """Build from a spec's ``net`` and ``options``; ``filled`` are compiler-known
        arguments (see :data:`FILLED`), passed to the classes that take them."""
        config = cls.validate_options(options or {})
        accepted = inspect.signature(cls).parameters
        config.update({k: v for k, v in (filled or {}).items() if k in accepted})
        if "net" in accepted:
            config["net"] = (net or Net()).over(cls.net_defaults)
        return cls(dim, context_features, **config)

    @classmethod
    def check_build(cls, dim: int, context_features: int, net: Net, options: Mapping[str, Any],
                    filled: Mapping[str, Any]) -> None:
        """ValueError for anything the constructor would refuse (``net``: the network as it
        will be built, defaults laid under it), without building it: the graph builder calls
        this so that ``check`` rejects what compiling would."""

    @classmethod
    def network(cls, net: Net | None) -> Net:
        """The network this class builds from the spec's ``net`` (its defaults laid under it)."""
        return (net or Net()).over(cls.net_defaults)


class Family(Configurable):
    """A distribution family of nodes; ``condition(context)`` returns a Pyro distribution
    with ``event_shape == (dim,)`` whose batch dims are the context's (none at the root)."""

    roles: ClassVar[frozenset[str]] = frozenset()  # "prior", "guide", "likelihood"
    reparameterized: ClassVar[bool] = True  # latents are drawn with rsample (pathwise gradients)
    analytic_kl_with: ClassVar[frozenset[str]] = frozenset()  # families p with a closed-form KL(this || p)
    continuous: ClassVar[bool] = False  # a density of real values (not of binary or discrete ones)
    merges_with: ClassVar[frozenset[str]] = frozenset()  # prior families merge: prior can combine it with
    doc: ClassVar[str] = ""

    @classmethod
    def merge(cls, q, p):
        """The guide's ``q`` combined with the prior ``p`` (``merge: prior``)."""
        raise NotImplementedError(f"{cls.__name__} does not merge with a prior")


class TransformModule(Configurable):
    """A deterministic node; ``condition(context)`` returns a callable on its input's value.

    ``bijective``: invertible in its ``input`` (the checker's rule 2 relies on it).  A
    transform is applied to the node :meth:`applied_to` names (its bijective input, or
    what a non-bijective kind refines)."""

    bijective: ClassVar[bool] = True
    needs_dim: ClassVar[bool] = False  # True: declared without an input, with `dim`
    doc: ClassVar[str] = ""

    @classmethod
    def applied_to(cls, name: str, nodes: Mapping[str, Any]) -> str | None:
        """The node whose value the transform of node ``name`` maps (``nodes``: the graph's
        nodes, with ``kind``, ``family``, ``dim``, ``bijective_input`` and ``conditioners``).
        Raises ValueError for a graph in which it is ambiguous."""
        return nodes[name].bijective_input


class NetworkKind:
    """How a network of one kind maps an input shape to an output shape.

    ``keys`` are the spec keys a network of this kind may have; ``build`` returns a module
    ``(..., prod(in_shape)) -> (..., prod(out_shape))`` on flat values.  Modules a kind
    builds subclass :class:`~hiervae.nn.networks.base.Network`, which is how
    ``train.precision: bf16`` finds them (``bf16`` says what that means for the kind)."""

    keys: ClassVar[frozenset[str]] = frozenset()
    bf16: ClassVar[str] = "matmuls in bf16 under autocast, output cast back to float32"

    @classmethod
    def check(cls, net: Net, in_shape: tuple[int, ...], out_shape: tuple[int, ...] | None) -> None:
        """ValueError if a network of this kind cannot map ``in_shape`` to ``out_shape``."""

    @classmethod
    def out_features(cls, net: Net, in_shape: tuple[int, ...], out_shape: tuple[int, ...] | None) -> int:
        """Output size of the network :meth:`build` would build (flat values)."""
        raise NotImplementedError

    @classmethod
    def build(cls, net: Net, in_shape: tuple[int, ...], out_shape: tuple[int, ...] | None):
        raise NotImplementedError


ENCODER_KEYS = frozenset({"mlp", "resnet", "activation", "out", "out_activation", "batch_norm", "dropout", "scale",
                          "kernel"})
"""What an encoder of a guide input reads (all but ``separate``: an encoder has one output)."""


def unused_net_keys(net: Net, reads: frozenset[str], kinds: frozenset[str]) -> list[tuple[str, str, bool]]:
    """``(key, why, always)`` for every written key of ``net`` that this consumer would not
    read; ``always``: no consumer could (a key of another network kind, or a kind the
    consumer cannot use), as opposed to a key other consumers of a template may read."""
    problems: list[tuple[str, str, bool]] = []
    kind = net.kind or "mlp"
    if kind not in kinds:
        return [(kind, f"{_a(kind)} {kind} network cannot be used here (accepted: {', '.join(sorted(kinds))})", True)]
    own = NETWORKS.get(kind).keys
    for key in sorted(net.written):
        if key not in own:
            other = [name for name in NETWORKS if key in NETWORKS.get(name).keys]
            hint = f" (it is a {' / '.join(other)} key)" if other else ""
            problems.append((key, f"{key!r} does not apply to {_a(kind)} {kind} network{hint}", True))
        elif key not in reads and key not in ("mlp", "resnet"):
            read = ", ".join(sorted((reads & own) - {"mlp", "resnet"})) or "nothing"
            problems.append((key, f"{key!r} is not read here (read: {read})", False))
    return problems


def _a(word: str) -> str:
    return "an" if word[:1] in "aeiou" or word.startswith("mlp") else "a"
