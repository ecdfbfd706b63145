"""ModelGraph -> compiled Pyro program (torch modules, model/guide) and its objective."""

from hiervae.compile.objective import ElboTerms, compile_objective, elbo_terms, loss
from hiervae.compile.program import Program, compile_graph

__all__ = ["Program", "compile_graph", "ElboTerms", "compile_objective", "elbo_terms", "loss"]
