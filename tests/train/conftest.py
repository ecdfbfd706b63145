"""Fixtures for the training tests: one CPU thread (the test machine is shared), specs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
SPECS = REPO / "specs"
QUICKSTART = SPECS / "quickstart.yaml"
SHARED_DATA = (REPO / ".." / "shared" / "data").resolve()


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models are fastest on one thread; more threads contend with other jobs."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)



@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    needed = [SHARED_DATA / "mnist" / n for n in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                                                 "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")]
    if not all(p.is_file() for p in needed):
        pytest.skip("shared MNIST files absent")
    return SHARED_DATA
