"""Executors: where the budget's trials run (``--executor``, ``--workers``).

An ``Executor`` maps a function over a batch of items (the budget's trial jobs) and returns the
results in the items' order; each item declares the ``TrialResources`` it needs. Three kinds:

- ``local`` with one worker (the default): in this process, one item after another, exactly as the
  budget always ran its trials;
- ``local`` with ``--workers N``: N worker processes on this machine (``concurrent.futures`` with the
  ``spawn`` start method: no extra dependency, and no forked copy of a parent holding threads);
- ``ray``: Ray's task API, each item a task with ``num_cpus``/``num_gpus`` from its resources.
  ``--executor ray`` starts an embedded local Ray (``--workers N``: N CPUs); ``--executor
  ray://HOST:PORT``, or ``RAY_ADDRESS`` in the environment, joins an existing cluster. Ray places the
  tasks; yolocc has no scheduler of its own. Ray is the optional extra ``yolocc[ray]``.

Out of process, ``fn`` and the items must pickle, and a worker limits its torch threads to the
item's ``cpus``. An exception raised by an item is raised here, after the items already running
have finished (a ``KeyboardInterrupt`` cancels those not started).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from .errors import UsageError

log = logging.getLogger(__name__)

#: ``--executor`` values besides ``ray://HOST:PORT``.
EXECUTORS = ("local", "ray")
RAY_MISSING = "--executor ray needs Ray: pip install 'yolocc[ray]'"


@dataclass(frozen=True)
class TrialResources:
    """What one trial needs: ``cpus`` (also its torch threads out of process) and ``gpus``."""

    cpus: int = 1
    gpus: float = 0

    def __post_init__(self) -> None:
        if self.cpus < 1 or self.gpus < 0:
            raise ValueError(f"trial resources must be cpus >= 1 and gpus >= 0, got {self}")


Done = Callable[[int, Any], None]


class Executor:
    """Runs ``fn`` over items; see the module. ``name`` and ``workers`` describe it for reports."""

    name: str = ""
    #: True: ``fn`` runs in this process (no pickling; the items may share objects with the caller).
    in_process: bool = False
    workers: int = 1

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any], resources: Sequence[TrialResources],
            done: Done | None = None) -> list[Any]:
        """``[fn(item) for item in items]``, concurrently where the executor can; ``done(i, result)`` is
        called in this process as each item finishes (in finishing order)."""
        raise NotImplementedError

    def visible_gpus(self) -> int:
        """GPUs trials can be given (0: train on CPUs)."""
        return 0

    def cpus(self) -> int:
        """CPUs the executor has for trials (its share of this machine, or the cluster's)."""
        return os.cpu_count() or 1

    def resources(self, trains: bool, batch: int = 1) -> TrialResources:
        """A trial's resources in a batch of ``batch`` trials: one GPU to train where a GPU is visible;
        else a training trial gets an equal share of the CPUs between the trials that run at once (at
        most ``workers``); a measurement-only trial takes one CPU."""
        if trains and self.visible_gpus():
            return TrialResources(cpus=1, gpus=1)
        if trains:
            return TrialResources(cpus=max(1, self.cpus() // max(1, min(self.workers, batch))))
        return TrialResources(cpus=1)

    def close(self) -> None:
        """Release worker processes or the Ray connection (an executor may be closed twice)."""

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _torch_gpus() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # no usable CUDA runtime: train on CPUs
        return 0


def run_limited(fn: Callable[[Any], Any], item: Any, threads: int) -> Any:
    """``fn(item)`` in a worker, with torch (and OpenMP libraries started later) limited to ``threads``."""
    import torch

    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)
    return fn(item)


class InProcess(Executor):
    """``local`` with one worker: in this process, one item after another (the default)."""

    name, in_process, workers = "local", True, 1

    def map(self, fn, items, resources, done=None):
        results = []
        for i, item in enumerate(items):
            results.append(fn(item))
            if done is not None:
                done(i, results[-1])
        return results

    def visible_gpus(self) -> int:
        return _torch_gpus()


def _spawn_bootstrapping() -> bool:
    """True in a spawned worker while it imports its parent's main module: the state in which
    multiprocessing refuses to start processes (its own test, ``multiprocessing.spawn``), so a script
    without a ``__main__`` guard gets one line here instead of a traceback from the worker."""
    import multiprocessing.process

    return bool(getattr(multiprocessing.process.current_process(), "_inheriting", False))


class LocalPool(Executor):
    """``local`` with ``--workers N``: N spawned worker processes on this machine, started at the first
    batch and kept for the search (each imports torch once)."""

    name = "local"

    def __init__(self, workers: int):
        self.workers = workers
        self._pool = None

    def _executor(self):
        if self._pool is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
        return self._pool

    def map(self, fn, items, resources, done=None):
        from concurrent.futures import FIRST_COMPLETED, wait
        from concurrent.futures.process import BrokenProcessPool

        if _spawn_bootstrapping():
            raise UsageError(f"--workers {self.workers}: this script starts a search when it is imported, and every "
                             f"worker process imports it again: put the call under "
                             f"'if __name__ == \"__main__\":'")
        pool = self._executor()
        futures = [pool.submit(run_limited, fn, item, res.cpus) for item, res in zip(items, resources)]
        index = {f: i for i, f in enumerate(futures)}
        pending = set(futures)
        try:
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in sorted(finished, key=index.get):
                    if not f.cancelled() and f.exception() is None and done is not None:
                        done(index[f], f.result())
        except BaseException:
            for f in futures:
                f.cancel()
            raise
        try:
            return [f.result() for f in futures]  # the first failure in item order is raised
        except BrokenProcessPool:
            self._pool = None
            raise UsageError(f"--workers {self.workers}: a worker process died while running a trial (killed, "
                             f"out of memory, or a script that starts a search without an "
                             f"'if __name__ == \"__main__\":' guard)") from None

    def visible_gpus(self) -> int:
        return _torch_gpus()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


class RayExecutor(Executor):
    """``ray``: each item a Ray task with its resources (see the module)."""

    name = "ray"

    def __init__(self, address: str | None, workers: int | None):
        try:
            import ray
        except ImportError:
            raise UsageError(RAY_MISSING) from None
        self.ray = ray
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.remote = self.address is not None and self.address not in ("local",)
        self._started = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"address": self.address, "include_dashboard": False,
                                      "log_to_driver": False, "configure_logging": False}
            if not self.remote:
                kwargs["num_cpus"] = workers or os.cpu_count() or 1
                # workers are fresh interpreters: give them this process's import path (test modules,
                # an uninstalled plugin's folder)
                kwargs["runtime_env"] = {"env_vars": {"PYTHONPATH": os.pathsep.join(p for p in _sys_path() if p)}}
            try:
                ray.init(**kwargs)
            except Exception as e:  # no cluster there, the Ray client extra missing ...
                where = f"join the Ray cluster at {self.address}" if self.remote else "start a local Ray"
                first = (str(e).strip().splitlines() or [type(e).__name__])[0]
                raise UsageError(f"--executor {address or 'ray'}: cannot {where}: {first}") from None
            self._started = True
        total = ray.cluster_resources()
        self._cpus, self._gpus = int(total.get("CPU", 1)), int(total.get("GPU", 0))
        self.workers = workers or (self._gpus if self._gpus else self._cpus)
        self._task = ray.remote(run_limited)

    def cpus(self) -> int:
        return self._cpus

    def visible_gpus(self) -> int:
        return self._gpus

    def map(self, fn, items, resources, done=None):
        ray = self.ray
        refs = [self._task.options(num_cpus=res.cpus, num_gpus=res.gpus).remote(fn, item, res.cpus)
                for item, res in zip(items, resources)]
        index = {ref: i for i, ref in enumerate(refs)}
        pending = list(refs)
        try:
            while pending:
                finished, pending = ray.wait(pending, num_returns=1)
                for ref in finished:
                    try:
                        result = ray.get(ref)
                    except ray.exceptions.RayTaskError:
                        continue  # raised below, in item order
                    if done is not None:
                        done(index[ref], result)
        except BaseException:
            for ref in pending:
                ray.cancel(ref)
            raise
        out = []
        for ref in refs:
            try:
                out.append(ray.get(ref))
            except ray.exceptions.RayTaskError as e:  # the worker's exception, as raised there
                if isinstance(getattr(e, "cause", None), BaseException):
                    raise e.cause from None
                raise
        return out

    def close(self) -> None:
        if self._started:
            self.ray.shutdown()
            self._started = False


def _sys_path() -> list[str]:
    import sys

    return [str(Path(p).resolve()) if p else os.getcwd() for p in sys.path]


def make_executor(spec: str | None, workers: int | None) -> Executor:
    """The executor ``--executor spec --workers workers`` names (None: ``local``, one worker)."""
    spec = spec or "local"
    if spec == "local":
        return InProcess() if (workers or 1) == 1 else LocalPool(workers)
    if spec == "ray" or spec.startswith("ray://"):
        return RayExecutor(None if spec == "ray" else spec, workers)
    raise UsageError(f"unknown executor '{spec}' (choose from: local, ray, ray://HOST:PORT)")


def is_remote(spec: str | None) -> bool:
    """Whether ``--executor spec`` joins a cluster (``ray://``, or ``ray`` with ``RAY_ADDRESS`` set)."""
    return bool(spec) and (spec.startswith("ray://") or (spec == "ray" and bool(os.environ.get("RAY_ADDRESS"))))
