"""Locating, verifying and downloading files (hiervae/data/files.py), with a fake web."""

from __future__ import annotations

import hashlib
import urllib.error
from pathlib import Path

import pytest

from hiervae.data import files
from hiervae.data.files import FileSpec
from hiervae.errors import DataError

PAYLOAD = b"hiervae test payload\n" * 100
SPEC = FileSpec("thing.bin", hashlib.sha256(PAYLOAD).hexdigest(), len(PAYLOAD),
                ("https://a.example/thing.bin", "https://b.example/thing.bin"))


def test_cache_dir_follows_xdg_cache_home(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert files.cache_dir() == tmp_path / "xdg" / "hiervae"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert files.cache_dir() == tmp_path / "home" / ".cache" / "hiervae"


def _put(path: Path, text: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text)
    return path


def test_search_order_is_data_dir_then_env_then_cache(monkeypatch, tmp_path):
    explicit, env = tmp_path / "explicit", tmp_path / "env"
    cached = _put(files.cache_dir() / "ds" / "f")
    assert files.find("ds", "f", None) == cached
    env_file = _put(env / "f")
    monkeypatch.setenv("HIERVAE_DATA", str(env))
    assert files.find("ds", "f", None) == env_file
    explicit_flat = _put(explicit / "f")
    assert files.find("ds", "f", explicit) == explicit_flat
    explicit_nested = _put(explicit / "ds" / "f")
    assert files.find("ds", "f", explicit) == explicit_nested
    assert files.candidates("ds", "f", explicit) == [
        explicit / "ds" / "f", explicit / "f", cached, files.cache_dir() / "f"]


def test_cache_is_searched_after_the_data_root(tmp_path):
    cached = _put(files.cache_dir() / "ds" / "f")
    (tmp_path / "empty").mkdir()
    assert files.find("ds", "f", tmp_path / "empty") == cached


@pytest.mark.parametrize("how", ["argument", "env"])
def test_nonexistent_data_root_is_an_error(monkeypatch, tmp_path, one_line, how):
    gone = tmp_path / "no-such-dir"
    if how == "env":
        monkeypatch.setenv("HIERVAE_DATA", str(gone))
    with pytest.raises(DataError) as err:
        files.find("ds", "f", gone if how == "argument" else None)
    msg = one_line(err)
    assert str(gone) in msg and "does not exist" in msg
    assert ("--data-dir" if how == "argument" else "HIERVAE_DATA") in msg


def test_sha256_is_computed_once_per_file_version(monkeypatch, tmp_path):
    path = _put(tmp_path / "f", b"one")
    calls = []
    real = hashlib.new
    monkeypatch.setattr(files.hashlib, "new", lambda *a: calls.append(1) or real(*a))
    assert files.sha256_of(path) == hashlib.sha256(b"one").hexdigest()
    assert files.sha256_of(path) == hashlib.sha256(b"one").hexdigest()
    assert len(calls) == 1
    path.write_bytes(b"other")  # new size and mtime: a new version, hashed again
    assert files.sha256_of(path) == hashlib.sha256(b"other").hexdigest()
    assert len(calls) == 2


def test_verify_rejects_a_wrong_checksum(tmp_path, one_line):
    path = _put(tmp_path / "thing.bin", PAYLOAD[:-1] + b"?")
    with pytest.raises(DataError) as err:
        files.verify("ds", path, SPEC)
    msg = one_line(err)
    assert str(path) in msg and f"expected {SPEC.checksum[:12]}" in msg and "bytes" not in msg
    assert files.verify("ds", _put(tmp_path / "good", PAYLOAD), SPEC) == tmp_path / "good"


def test_download_falls_back_to_the_next_mirror(web):
    web[SPEC.urls[0]] = urllib.error.URLError("Name or service not known")
    web[SPEC.urls[1]] = PAYLOAD
    path = files.fetch("ds", SPEC, None, allow_download=True)
    assert path == files.cache_dir() / "ds" / "thing.bin"
    assert path.read_bytes() == PAYLOAD
    assert web.requested == list(SPEC.urls)
    assert sorted(p.name for p in path.parent.iterdir()) == ["thing.bin"]  # no temp files left
    web.clear()
    assert files.fetch("ds", SPEC, None, allow_download=True) == path  # found, not fetched again
    assert web.requested == list(SPEC.urls)


def test_download_failure_is_one_line_naming_file_and_mirrors(web, one_line):
    web[SPEC.urls[0]] = urllib.error.HTTPError(SPEC.urls[0], 503, "down", {}, None)
    with pytest.raises(DataError) as err:
        files.fetch("ds", SPEC, None, allow_download=True)
    msg = one_line(err)
    assert "could not download thing.bin" in msg and "HTTP 503" in msg and "HTTP 404" in msg
    assert SPEC.urls[0] in msg and SPEC.urls[1] in msg and "--data-dir" in msg
    assert list((files.cache_dir() / "ds").iterdir()) == []


@pytest.mark.parametrize("served", [PAYLOAD[:-1] + b"!", PAYLOAD[:100], PAYLOAD + b"extra"])
def test_download_with_wrong_bytes_is_rejected(web, one_line, served):
    web[SPEC.urls[0]] = web[SPEC.urls[1]] = served
    with pytest.raises(DataError) as err:
        files.fetch("ds", SPEC, None, allow_download=True)
    msg = one_line(err)
    assert "thing.bin" in msg and ("sha256" in msg or "more than the expected" in msg)
    assert list((files.cache_dir() / "ds").iterdir()) == []


def test_missing_file_without_download_says_how_to_fix(tmp_path, one_line):
    with pytest.raises(DataError) as err:
        files.fetch("ds", SPEC, tmp_path, allow_download=False)
    msg = one_line(err)
    assert "thing.bin not found" in msg and str(tmp_path) in msg
    assert "--data-dir" in msg and "HIERVAE_DATA" in msg
