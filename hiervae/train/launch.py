"""``hiervae fit --nproc N``: spawn N local training processes and wait for them.

Each process gets the environment torchrun would give it (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``) and a rendezvous file in the launcher's private temporary directory
(:data:`~hiervae.train.collectives.INIT_FILE_ENV`; a port found free by one process can
be taken by another before the group binds it, a private file cannot), then runs
:func:`hiervae.train.fit` with ``distributed=True``.  A user-facing error in any process
is raised here once; a bug shows the worker's traceback.
"""

from __future__ import annotations

import json
import os
import pickle
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable

import torch
import torch.distributed as dist

from hiervae.errors import HiervaeError, RunError
from hiervae.language import load_spec
from hiervae.policy import resolve_device
from hiervae.train.collectives import INIT_FILE_ENV, World, launched_by_torchrun
from hiervae.train.fit import fit

STOP_GRACE_S = 10.0  # after one process fails, how long the others get to stop by themselves


class WorkerError(HiervaeError):
    """A user-facing error raised in a worker process, re-raised in the launcher."""

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code


def check_launch(nproc: int, spec_path: str | Path, overrides: Iterable[str], device: str) -> None:
    """Refuse what cannot work before spawning anything (one message, not N)."""
    if launched_by_torchrun():
        raise RunError("--nproc: this process was started by torchrun, which already made the processes; drop --nproc")
    if torch.device(device).type == "cuda":  # before resolve_device: say how many GPUs it takes
        if torch.device(device).index is not None:
            raise RunError(f"--device {device}: with --nproc each process uses its own GPU; pass --device cuda")
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if nproc > count:
            raise RunError(f"--nproc {nproc} --device cuda: needs {nproc} GPUs, {count} visible")
    elif resolve_device(device) and not dist.is_gloo_available():
        raise RunError("--nproc on the CPU needs torch.distributed with gloo, which this torch lacks")
    spec = load_spec(spec_path, list(overrides))
    batch = spec.document.train.batch_size
    if batch % nproc:
        raise RunError(f"--nproc {nproc}: train.batch_size {batch} is the global batch and must be divisible by "
                       f"the number of processes ({batch} = {nproc} x {batch / nproc:g})")


def launch(nproc: int, spec_path: str | Path, overrides: Iterable[str] = (), *, device: str = "cpu",
           threads: int | None = None, **fit_kwargs: Any):
    """Train with ``nproc`` local processes; returns rank 0's :class:`FitResult`.

    ``fit_kwargs`` are :func:`hiervae.train.fit`'s (picklable ones: no ``log``).  Each
    process uses ``threads`` CPU threads (default: the cores divided among them).  A
    user-facing error in any process is raised here, once, as it was raised there.
    """
    overrides = list(overrides)
    if nproc == 1:
        if threads is not None:
            torch.set_num_threads(threads)
        return fit(spec_path, overrides, device=device, **fit_kwargs)
    check_launch(nproc, spec_path, overrides, device)
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory(prefix="hiervae-nproc-") as tmp:
        args = (nproc, tmp, str(spec_path), overrides, device, threads, fit_kwargs)
        ctx = mp.start_processes(_worker, args=args, nprocs=nproc, join=False, start_method="spawn")
        try:
            _wait(ctx.processes)
        finally:
            for p in ctx.processes:
                if p.is_alive():
                    p.terminate()
                p.join()
        reported = sorted(Path(tmp).glob("error-*.json"), key=lambda p: int(p.stem.split("-")[1]))
        if reported:  # a user-facing error: the lowest rank's, once
            info = json.loads(reported[0].read_text())
            raise WorkerError(info["message"], info["exit_code"])
        for rank, p in enumerate(ctx.processes):
            if p.exitcode == 0:
                continue
            trace = Path(ctx.error_files[rank])
            if trace.is_file() and trace.stat().st_size:  # a bug: show the worker's traceback
                with open(trace, "rb") as f:
                    raise RuntimeError(f"training process {rank} failed:\n{pickle.load(f)}")
            how = f"was killed by signal {-p.exitcode}" if p.exitcode < 0 else f"exited with code {p.exitcode}"
            raise RunError(f"training process {rank} {how}; the others were stopped")
        result = Path(tmp) / "result.pkl"
        if not result.is_file():
            raise RunError("the training processes ended without a result (interrupted?)")
        with open(result, "rb") as f:
            return pickle.load(f)


def _wait(processes, grace_s: float = STOP_GRACE_S) -> None:
    """Wait for every process; once one has failed, give the others ``grace_s`` to stop
    by themselves (they normally meet the same error), then terminate them."""
    from multiprocessing.connection import wait

    deadline = None
    while any(p.is_alive() for p in processes):
        wait([p.sentinel for p in processes if p.is_alive()], timeout=1.0)
        if deadline is None and any(p.exitcode not in (None, 0) for p in processes):
            deadline = time.monotonic() + grace_s
        if deadline is not None and time.monotonic() > deadline:
            for p in processes:
                if p.is_alive():
                    p.terminate()
            return


def _worker(rank: int, nproc: int, tmp: str, spec_path: str, overrides: list[str], device: str,
            threads: int | None, fit_kwargs: dict[str, Any]) -> None:
    """One process of :func:`launch`: the torchrun environment by hand, then ``fit``."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(nproc),
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(nproc))
    os.environ[INIT_FILE_ENV] = str(Path(tmp) / "rendezvous")
    if torch.device(device).type == "cpu" and "GLOO_SOCKET_IFNAME" not in os.environ and sys.platform.startswith("linux"):
        if any(name == "lo" for _, name in socket.if_nameindex()):
            os.environ["GLOO_SOCKET_IFNAME"] = "lo"  # one node: keep gloo's connections on loopback
    torch.set_num_threads(threads or max(1, (os.cpu_count() or 1) // nproc))
    world = None
    try:
        world = World.from_env(device)  # this process owns the group: fit uses it and leaves it
        result = fit(spec_path, overrides, device=device, distributed=True, **fit_kwargs)
        world.close(synchronize=True)
    except HiervaeError as err:  # report first: tearing down gloo after a peer left may abort
        Path(tmp, f"error-{rank}.json").write_text(json.dumps({"message": str(err), "exit_code": err.exit_code}))
        sys.exit(err.exit_code)
    finally:
        if world is not None:
            world.close()
    if rank == 0:
        partial = Path(tmp, "result.pkl.partial")
        with open(partial, "wb") as f:
            pickle.dump(result, f)
        partial.replace(Path(tmp, "result.pkl"))
