"""Spec language: YAML -> validated, expanded :class:`Spec` (see docs/spec.md)."""

from hiervae.language.load import FactorDecl, FeatureDecl, NodeDecl, Spec, load_spec, parse_spec
from hiervae.language.schema import json_schema

__all__ = ["Spec", "NodeDecl", "FactorDecl", "FeatureDecl", "load_spec", "parse_spec", "json_schema"]
