"""What the graph layer must know about each family and transform kind, without torch.

The check and render stages need only structural facts (is a transform bijective in
its ``input``? does a family have a closed-form KL against a Gaussian prior?).  The
torch implementations live in :mod:`hiervae.nn`, registered under the same names; a
test keeps the two tables in step.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TransformKind:
    bijective: bool  # bijective in its `input`
    doc: str


@dataclass(frozen=True)
class FamilyKind:
    roles: frozenset[str]  # where it may appear: "prior", "guide", "likelihood"
    analytic_kl: bool  # closed-form KL between two members (Pyro's kl_divergence)
    doc: str


TRANSFORMS: dict[str, TransformKind] = {
    "affine_lowrank": TransformKind(True, "z = shift + (diag(d) + u u^T) eps, d > 0 (paper eq. 19 of Rezende et al.)"),
    "affine_diag": TransformKind(True, "z = shift + d * eps, d > 0"),
    "spline_coupling": TransformKind(True, "rational-quadratic spline coupling layers (Durkan et al.)"),
    "residual": TransformKind(False, "deterministic residual refinement h' = h + r(h, given)"),
}

FAMILIES: dict[str, FamilyKind] = {
    "normal": FamilyKind(frozenset({"prior", "guide", "likelihood"}), True, "diagonal Gaussian, sigma^2 = softplus(elu(raw)) + floor"),
    "std_normal": FamilyKind(frozenset({"prior"}), True, "standard normal N(0, I), no parameters"),
    "iaf": FamilyKind(frozenset({"guide"}), False, "diagonal Gaussian followed by conditional inverse autoregressive flow steps"),
    "bernoulli": FamilyKind(frozenset({"likelihood"}), False, "independent Bernoulli with logits"),
    "maf": FamilyKind(frozenset({"likelihood"}), False, "conditional masked autoregressive flow over a unit-rank Gaussian base"),
}


def families_for(role: str) -> list[str]:
    return sorted(name for name, kind in FAMILIES.items() if role in kind.roles)
