""":class:`NetworkBuilder`: the networks of one program, each use its own module or, for a
template declared ``shared: true``, the one instance every use of that name gets.

Sharing is by name: ``net: up`` (or an encoder ``up``) names the instance; a template that
``extends: up`` is a copy with its own weights.  The graph builder has checked that every use
of a shared instance maps the same input shape to the same output size."""

from __future__ import annotations

from torch import nn

from hiervae.language.net import Net
from hiervae.nn.registry import NETWORKS


class NetworkBuilder:
    def __init__(self) -> None:
        self.instances: dict[str, nn.Module] = {}  # shared template name -> its module

    def build(self, net: Net, in_shape: tuple[int, ...], out: int | tuple[int, ...] | None) -> nn.Module:
        out_shape = None if out is None else ((out,) if isinstance(out, int) else tuple(out))
        if net.shared is not None and net.shared in self.instances:
            return self.instances[net.shared]
        module = NETWORKS.get(net.kind or "mlp").build(net, in_shape, out_shape)
        if net.shared is not None:
            self.instances[net.shared] = module
        return module
