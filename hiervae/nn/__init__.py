"""Neural building blocks of the Self-Reflective VAE; importing this registers them all.

Registries (names usable in specs):

* ``FAMILIES`` (distribution of a stochastic layer's ``eps``): ``normal``
  (:class:`DiagonalGaussianHead`; ``residual=True`` makes it the ResNet SeRe-VAE's residual
  variational layer, :class:`ResidualParamNet`), ``std_normal`` (:class:`StandardNormal`), ``iaf``
  (:class:`ConditionalIAF`, a guide family: no closed-form KL).
* ``TRANSFORMS`` (shared bijector ``z = f(eps | context)``): ``affine_lowrank``
  (:class:`AffineLowRank`), ``affine_diag`` (:class:`AffineDiag`, the same with
  ``rank`` pinned to 0).
* likelihood families in ``FAMILIES`` too: ``bernoulli`` (:class:`BernoulliDecoder`, an MLP or
  a transposed-convolution :class:`ResNetDecoder`).
* not registered, built by the compiler for ``encoders:``: :class:`MLP` and, for image-shaped
  observed nodes, :class:`ResNetEncoder`.
* ``ACTIVATIONS``: names accepted by every ``activation``/``out_activation`` option.

Uniform contract of registered classes (see :class:`Configurable`)::

    module = REGISTRY.get(name).from_config(dim, context_features, options)
    module.options()                  # accepted option -> default, for validation
    module.condition(context)         # family    -> Pyro distribution, event_shape (dim,)
                                      # transform -> torch Transform on (..., dim)

``context`` is a tensor ``(..., context_features)`` whose batch dims become the batch
dims of the result, or ``None`` when ``context_features == 0`` (root layer: learned
constants, unbatched result that Pyro plates broadcast).  All of them are
``nn.Module``\\ s, to be registered with ``pyro.module``.
"""

from hiervae.nn.bijectors import AffineDiag, AffineLowRank, ConditionalIAF, LowRankAffineTransform
from hiervae.nn.flows import MAFLikelihood, Residual, SplineCoupling  # noqa: F401  (registers maf, spline_coupling, residual)
from hiervae.nn.gaussian import (
    VARIANCE_FLOOR,
    DiagonalGaussianHead,
    StandardNormal,
    diag_normal,
    scale_from_raw,
    softplus_elu,
    variance_from_raw,
)
from hiervae.nn.likelihoods import BernoulliDecoder
from hiervae.nn.mlp import ACTIVATIONS, MLP, ParamNet, make_activation
from hiervae.nn.registry import FAMILIES, TRANSFORMS, Configurable
from hiervae.nn.residual_layer import ResidualParamNet
from hiervae.nn.resnet import ResidualBlock, ResNetDecoder, ResNetEncoder

__all__ = [
    "ACTIVATIONS",
    "FAMILIES",
    "MLP",
    "TRANSFORMS",
    "VARIANCE_FLOOR",
    "AffineDiag",
    "AffineLowRank",
    "BernoulliDecoder",
    "Configurable",
    "ConditionalIAF",
    "DiagonalGaussianHead",
    "LowRankAffineTransform",
    "ParamNet",
    "ResNetDecoder",
    "ResNetEncoder",
    "ResidualBlock",
    "ResidualParamNet",
    "StandardNormal",
    "diag_normal",
    "make_activation",
    "scale_from_raw",
    "softplus_elu",
    "variance_from_raw",
]
