"""Every Python block of docs/api.md runs, in order, and prints what its comments say."""

from __future__ import annotations

import contextlib
import io
import re
import shutil
from pathlib import Path

import pyro

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "api.md"


def blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)


def test_every_example_in_the_api_doc_runs_and_prints_what_it_says(tmp_path, monkeypatch):
    shutil.copytree(ROOT / "specs", tmp_path / "specs")
    monkeypatch.chdir(tmp_path)
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    namespace: dict = {}
    code = blocks()
    assert len(code) == 4
    for block in code:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(block, str(DOC), "exec"), namespace)
        printed = out.getvalue().splitlines()
        expected = claims(block)
        assert len(printed) == len(expected), (printed, expected)
        for shown, claim in zip(printed, expected):
            assert shown == claim, (shown, claim)


def claims(block: str) -> list[str]:
    """What each print() says it prints: its trailing comment, or the comment line after it."""
    lines = block.splitlines()
    out = []
    for i, line in enumerate(lines):
        if line.startswith("print("):
            comment = re.search(r"\)\s+#\s*(.*)$", line)
            out.append(comment.group(1).strip() if comment else lines[i + 1].lstrip("# ").strip())
    return out
