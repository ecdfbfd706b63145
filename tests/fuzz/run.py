"""Run a hiervae command in-process as the CLI would, and say how it ended."""

from __future__ import annotations

import contextlib
import io
import signal
from dataclasses import dataclass

from hiervae.cli import main

HANG_S = 60  # a hang detector, far above any legitimate case: no case may run this long


class Hang(Exception):
    pass


@dataclass
class Outcome:
    code: int | None
    stdout: str
    stderr: str
    crash: BaseException | None = None

    def problem(self) -> str | None:
        """Why this outcome breaks the contract (None: it keeps it)."""
        if self.crash is not None:
            return f"uncaught {self.crash.__class__.__name__}: {str(self.crash)[:200]}"
        if self.code not in (0, 1, 2):
            return f"exit code {self.code}"
        if "Traceback" in self.stderr:
            return "a traceback on stderr"
        if self.code == 2 and len(self.stderr.strip().splitlines()) != 1:
            return f"{len(self.stderr.strip().splitlines())} lines on stderr: {self.stderr[:300]!r}"
        return None


def run(args: list[str]) -> Outcome:
    out, err = io.StringIO(), io.StringIO()

    def alarm(signum, frame):
        raise Hang(f"ran past {HANG_S} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(HANG_S)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(args)
        return Outcome(code, out.getvalue(), err.getvalue())
    except BaseException as crash:  # noqa: BLE001 -- the point is to see anything that escapes
        return Outcome(None, out.getvalue(), err.getvalue(), crash)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
