"""Runs the generator's jobs (one per slide, or per block of unlabeled images) inline or in
spawned worker processes, returning results in job order and printing progress lines. Per-patch seeds
make the files the same whatever the number of workers."""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed


def run_jobs(jobs: list[tuple], fn: Callable, workers: int | None, progress: bool, total: int) -> list:
    """Runs ``fn(*job)`` for every job, inline (workers=1) or in spawned processes, in job order.
    ``workers=None``: all cores, but inline for small jobs (starting processes costs more)."""
    if workers is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        workers = 1 if total < 200 else cores
    workers = max(1, min(int(workers), len(jobs)))
    results: list = [None] * len(jobs)
    done, shown, start = 0, 0, time.perf_counter()

    def tick(rows: list) -> None:
        nonlocal done, shown
        done += len(rows)
        if progress and (10 * done) // total > shown:
            shown = (10 * done) // total
            rate = done / max(time.perf_counter() - start, 1e-9)
            print(f"synthetic: {done}/{total} patches ({100 * done // total}%, {rate:.0f}/s)", flush=True)

    if workers == 1:
        for i, job in enumerate(jobs):
            results[i] = fn(*job)
            tick(results[i])
        return results
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(fn, *job): i for i, job in enumerate(jobs)}
        for fut in as_completed(futures):
            results[futures[fut]] = fut.result()
            tick(results[futures[fut]])
    return results
