"""ModelGraph -> compiled Pyro program (torch modules, model/guide) and its objective."""

from hiervae.program.objective import ElboTerms, compile_loss, elbo_terms, loss
from hiervae.program.program import Program, build_program

__all__ = ["Program", "build_program", "ElboTerms", "compile_loss", "elbo_terms", "loss"]
