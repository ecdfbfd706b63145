"""Evaluation of a compiled program: IW log-likelihood, ELBO, KL per latent, active units; image grids."""

from hiervae.evaluation.iw import inference_mode, iw_log_likelihood, log_weights, program_device
from hiervae.evaluation.metrics import EvalResult, evaluate_split, posterior_means
from hiervae.evaluation.samples import reconstruction_means, sample_means, write_sample_grids

__all__ = [
    "EvalResult", "evaluate_split", "inference_mode", "iw_log_likelihood", "log_weights",
    "posterior_means", "program_device", "reconstruction_means", "sample_means", "write_sample_grids",
]
