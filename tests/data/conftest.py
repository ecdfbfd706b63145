"""Fixtures for the data tests: the shared real files, an isolated cache, no network."""

from __future__ import annotations

import io
import socket
import urllib.error
from pathlib import Path

import pytest

from hiervae.data import files

SHARED_DATA = (Path(__file__).resolve().parents[2] / ".." / "shared" / "data").resolve()


MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
               "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` next to the repository, holding mnist/ and binarized_mnist/."""
    needed = [SHARED_DATA / "mnist" / n for n in MNIST_FILES]
    needed.append(SHARED_DATA / "binarized_mnist" / "binarized_mnist.npz")
    missing = [str(p) for p in needed if not p.is_file()]
    if missing:
        pytest.skip(f"shared data files absent: {', '.join(missing)}")
    return SHARED_DATA


class NetworkTouched(BaseException):
    """Raised if a test reaches for the network (BaseException: nothing may swallow it)."""


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """Each test gets its own empty cache, no HIERVAE_DATA, and no network at all."""
    monkeypatch.delenv("HIERVAE_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))

    def no_network(*args, **kwargs):
        raise NetworkTouched(f"test touched the network: {args!r}")

    monkeypatch.setattr(files, "_urlopen", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)



class FakeWeb(dict):
    """URL -> bytes (served) or exception (raised); ``requested`` lists the URLs asked for."""

    def __init__(self):
        super().__init__()
        self.requested: list[str] = []

    def open(self, url, timeout=None):
        self.requested.append(url)
        item = self.get(url, urllib.error.HTTPError(url, 404, "Not Found", {}, None))
        if isinstance(item, BaseException):
            raise item
        return io.BytesIO(item)


@pytest.fixture
def web(monkeypatch) -> FakeWeb:
    """Replace the URL opener by a :class:`FakeWeb` (unknown URLs answer HTTP 404)."""
    fake = FakeWeb()
    monkeypatch.setattr(files, "_urlopen", fake.open)
    return fake
