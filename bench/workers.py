"""Worker processes on this machine, one GPU each in turn: the one way a search (``search
--workers``) and a distributed suite (``run --workers``) start them, pin them and hear how they
ended."""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable

import torch

from bench.errors import UserError


def visible_gpus() -> list[str]:
    """The GPUs workers may take, as CUDA_VISIBLE_DEVICES names them for this process."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [g.strip() for g in listed.split(",") if g.strip()]
    return [str(i) for i in range(torch.cuda.device_count())]


def worker_gpus(workers: int, gpus: list[str]) -> list[str | None]:
    """One GPU per worker, in turn (more workers than GPUs share them); None without GPUs."""
    return [gpus[i % len(gpus)] if gpus else None for i in range(workers)]


def _run_pinned(job: Callable[[], None], threads: int, gpu: str | None) -> None:
    """A worker's body: ``job`` on its own GPU and its share of the cores; a user error is one
    line, as the command itself prints it, and exit 2 (the parent reports the exit)."""
    if gpu is not None:  # before anything touches CUDA: this worker sees one GPU, as cuda:0
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    torch.set_num_threads(threads)  # workers share the machine's cores instead of fighting over them
    try:
        job()
    except UserError as exc:
        print(f"unet-bench: error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)


def run_workers(
    job: Callable[[], None], workers: int, gpus: list[str] | None = None, threads: int | None = None
) -> list[str]:
    """Run ``job`` (picklable: a module-level function or a partial of one) in ``workers`` spawned
    processes, one of ``gpus`` (default: the visible ones) each in turn, and wait for all of them.
    Returns the workers that failed, as 'worker N (exit C)'."""
    context = multiprocessing.get_context("spawn")  # a clean process: no fork of CUDA or OpenMP state
    threads = threads or max(1, (os.cpu_count() or 1) // workers)
    devices = worker_gpus(workers, visible_gpus() if gpus is None else gpus)
    procs = [context.Process(target=_run_pinned, args=(job, threads, gpu)) for gpu in devices]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join()
    return [f"worker {i + 1} (exit {p.exitcode})" for i, p in enumerate(procs) if p.exitcode != 0]
