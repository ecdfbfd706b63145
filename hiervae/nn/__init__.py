"""Neural building blocks; importing this package registers every family, transform and
network kind (see :mod:`hiervae.nn.registry` for the contract).

* ``networks/`` -- network modules and kinds: ``mlp`` (:class:`MLP`), ``resnet``
  (:class:`ResNetEncoder`, :class:`ResNetDecoder`), and the building blocks :class:`ParamNet`
  (parameters of a conditional layer), :class:`ConditionalMADE`, :class:`EvidenceResidualNet`;
* ``families/`` -- ``normal``, ``std_normal``, ``iaf``, ``bernoulli``, ``maf``;
* ``transforms/`` -- ``affine_lowrank``, ``affine_diag``, ``spline_coupling``, ``residual``;
* :mod:`~hiervae.nn.precision` (bf16 networks, float32 objective), :mod:`~hiervae.nn.fold`
  (batch norm folded for inference), :mod:`~hiervae.nn.logit_space`.

A file name says where a spec name lives: ``dist: iaf`` is ``families/iaf.py``,
``transform: spline_coupling`` is ``transforms/spline_coupling.py``.
"""

from hiervae.nn import families, networks, transforms  # noqa: F401  (registers everything)
from hiervae.nn.families.bernoulli import BernoulliDecoder
from hiervae.nn.families.iaf import ConditionalIAF
from hiervae.nn.families.maf import MAFLikelihood
from hiervae.nn.families.normal import (
                                        VARIANCE_FLOOR,
                                        DiagonalGaussianHead,
                                        diag_normal,
                                        scale_from_raw,
                                        softplus_elu,
                                        variance_from_raw,
)
from hiervae.nn.families.std_normal import StandardNormal
from hiervae.nn.networks.evidence_residual import EvidenceResidualNet
from hiervae.nn.networks.made import ConditionalMADE
from hiervae.nn.networks.mlp import ACTIVATIONS, MLP, make_activation
from hiervae.nn.networks.params import ParamNet, cat_context
from hiervae.nn.networks.resnet import ResidualBlock, ResNetDecoder, ResNetEncoder
from hiervae.nn.registry import FAMILIES, NETWORKS, TRANSFORMS, Configurable, Family, NetworkKind, TransformModule
from hiervae.nn.transforms.affine import AffineDiag, AffineLowRank, LowRankAffineTransform
from hiervae.nn.transforms.residual import Residual
from hiervae.nn.transforms.spline_coupling import SplineCoupling

__all__ = [
    "ACTIVATIONS", "FAMILIES", "MLP", "NETWORKS", "TRANSFORMS", "VARIANCE_FLOOR", "AffineDiag", "AffineLowRank",
    "BernoulliDecoder", "ConditionalIAF", "ConditionalMADE", "Configurable", "DiagonalGaussianHead",
    "EvidenceResidualNet", "Family", "LowRankAffineTransform", "MAFLikelihood", "NetworkKind", "ParamNet",
    "ResNetDecoder", "ResNetEncoder", "Residual", "ResidualBlock", "SplineCoupling", "StandardNormal",
    "TransformModule", "cat_context", "diag_normal", "make_activation", "scale_from_raw", "softplus_elu",
    "variance_from_raw",
]
