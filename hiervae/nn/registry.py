"""The registries the compiler looks names up in, and the contract of their classes.

Every registered class is built the same way, so the compiler needs no per-class
code::

    cls = FAMILIES.get(name)            # or TRANSFORMS.get(name)
    module = cls.from_config(dim, context_features, options_from_spec)

``options()`` lists the accepted options with their defaults, so the spec layer can
reject a misspelt option before anything is built.
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar, Mapping

from hiervae.registry import Registry

FAMILIES: Registry[type] = Registry("family")
TRANSFORMS: Registry[type] = Registry("transform")


class Configurable:
    """Mixin of registered classes: ``__init__(self, dim, context_features, **options)``.

    All options are keyword arguments with defaults; ``context_features == 0`` means
    an unconditioned layer (the root of the hierarchy).  A registered variant of a
    class pins some options in ``fixed_options`` (and its ``__init__``); they are then
    not options of the variant.
    """

    fixed_options: ClassVar[dict[str, Any]] = {}

    @classmethod
    def options(cls) -> dict[str, Any]:
        """Option name -> default, read from the constructor signature."""
        params = list(inspect.signature(cls).parameters.values())[2:]
        return {p.name: p.default for p in params if p.name not in cls.fixed_options}

    @classmethod
    def from_config(cls, dim: int, context_features: int, config: Mapping[str, Any] | None = None):
        """Build from spec options; unknown options raise :class:`ValueError` naming them."""
        config = dict(config or {})
        known = cls.options()
        unknown = sorted(set(config) - set(known))
        if unknown:
            raise ValueError(
                f"{cls.__name__}: unknown option(s) {', '.join(unknown)}"
                f" (known: {', '.join(known)})"
            )
        return cls(dim, context_features, **config)
