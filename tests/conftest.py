"""Suite-wide settings: one torch thread per test process.

The suite runs with pytest-xdist on 2 cores; torch's default of one thread per core in
every worker oversubscribes the machine and makes small models many times slower.
"""

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture
def one_line():
    """A function returning an error's message after asserting it is a single line."""

    def check(err) -> str:
        text = str(err.value if hasattr(err, "value") else err)
        assert text and "\n" not in text, text
        return text

    return check
