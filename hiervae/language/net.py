"""A network as one typed value: :class:`Net`, what every network consumer receives whole.

The spec writes a network with the keys of :class:`~hiervae.language.schema.NetworkSpec`
(``mlp: [256, 256]`` or ``resnet: [16, 32]``, ``activation``, ``out``, ...).  A resolved
spec turns it into a :class:`Net`: the network *kind* (a name of the network registry,
``mlp`` or ``resnet``), its layer sizes and the other settings under the spec's names,
each ``None`` where it was not written, and where each written key was written.  A
consumer (a family, a transform, an encoder) lays the written keys over its own
defaults (:meth:`Net.over`), so a default is stated once, by its consumer, and a
written key is never renamed on the way.  Which keys a consumer reads is its own
declaration; a written key that nothing reads is an error at its line (checked when the
graph is built).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, Mapping

from hiervae.errors import Location

LAYER_KEYS = {"mlp": "mlp", "resnet": "resnet"}  # spec key holding the layer sizes -> network kind
_SETTINGS = ("activation", "out", "out_activation", "batch_norm", "dropout", "separate", "scale", "kernel", "shared")


@dataclass(frozen=True)
class Net:
    """A network: kind, layer sizes and settings (spec key names); ``None`` = not set."""

    kind: str | None = None  # "mlp" | "resnet" (a network kind's registered name)
    layers: tuple[int, ...] | None = None  # mlp: hidden widths; resnet: filters per block
    activation: str | None = None
    out: int | None = None  # output features of an encoder (heads fix their own)
    out_activation: str | None = None
    batch_norm: bool | None = None
    dropout: float | None = None
    separate: bool | None = None  # one network per parameter head (paper) instead of one shared trunk
    scale: str | None = None  # resnet: "down" | "up" (None: blocks keep the size)
    kernel: int | None = None  # resnet: odd convolution size
    shared: str | None = None  # the name of a shared instance (one module for every use)
    where: Mapping[str, Location] = field(default_factory=dict, compare=False, repr=False)
    templates: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)  # key -> template it came from

    @property
    def written(self) -> frozenset[str]:
        """The spec keys that are set (``mlp`` / ``resnet`` for the layer sizes)."""
        keys = {name for name in _SETTINGS if getattr(self, name) is not None and name != "shared"}
        if self.layers is not None:
            keys.add(self.kind or "mlp")
        return frozenset(keys)

    def location(self, key: str | None = None) -> Location:
        """Where ``key`` (or the network as a whole) was written."""
        if key is not None and key in self.where:
            return self.where[key]
        return next(iter(self.where.values()), Location())

    def over(self, defaults: "Net") -> "Net":
        """``defaults`` (then :data:`BASE`) with every setting set here laid over it."""
        own = {f.name: getattr(self, f.name) for f in fields(self)
               if f.name not in ("where", "templates") and getattr(self, f.name) is not None}
        if "layers" in own and "kind" not in own:
            own["kind"] = "mlp"
        under = BASE if defaults is BASE else defaults.over(BASE)
        return replace(under, **own, where=self.where, templates=self.templates)

    @classmethod
    def from_written(cls, values: Mapping[str, Any], where: Mapping[str, Location] | None = None,
                     shared: str | None = None, templates: Mapping[str, str] | None = None) -> "Net":
        """From spec keys and values (``{"mlp": [64], "activation": "tanh"}``), their locations
        and, for keys inherited from a named template, that template's name."""
        settings: dict[str, Any] = {}
        for key, value in values.items():
            if key in LAYER_KEYS:
                settings["kind"], settings["layers"] = LAYER_KEYS[key], tuple(value)
            else:
                settings[key] = value
        return cls(**settings, shared=shared, where=dict(where or {}), templates=dict(templates or {}))

    def describe(self) -> str:
        """``mlp [256, 256] relu`` (for messages and pictures)."""
        return f"{self.kind or 'mlp'} {list(self.layers or ())} {self.activation or ''}".rstrip()


BASE = Net(kind="mlp", layers=(), activation="relu", batch_norm=False, dropout=0.0, separate=True, kernel=3)
"""The settings every network has unless its consumer or the spec says otherwise."""
