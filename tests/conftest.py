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


# Every way a tensor's value reaches Python (on a GPU: a wait for the device).
HOST_SYNCS = ("item", "tolist", "numpy", "cpu", "__bool__", "__float__", "__int__", "__index__", "__array__")


@pytest.fixture
def forbid_syncs(monkeypatch):
    """``state["on"] = True`` makes every host sync (:data:`HOST_SYNCS`) raise an AssertionError.

    Set it only around the code under test: a sync added there later fails the test,
    on CPU, without a GPU to profile.
    """
    state = {"on": False}

    def patch(name):
        original = getattr(torch.Tensor, name)

        def guarded(self, *args, **kwargs):
            if state["on"]:
                raise AssertionError(f"host sync: Tensor.{name}")
            return original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, guarded)

    for name in HOST_SYNCS:
        patch(name)
    return state
