"""Run one function over many items, in this process, in N worker processes, or on a Ray cluster.

``retouch`` (one item = one photo) and ``eval`` (one item = one pair) hand their per-item function to
:func:`ordered_map`; the function is the same on every engine, so the outputs are too.

Engines (:class:`Engine`):

- ``local`` with ``jobs=1``: a plain loop in this process (what the commands always did);
- ``local`` with ``jobs=N > 1``: N worker processes (``spawn``), each with ``cores // N`` torch threads.
  A photo's decode and encode are single-threaded, so one process leaves cores idle while it reads
  and writes; N single-threaded processes keep every core busy, one decoding while another computes;
- ``ray``: one Ray task per item on the cluster at ``address`` (a local cluster of ``jobs`` CPUs, or
  all cores, when there is none). The items' files must be readable and writable by every node (a
  shared file system). Ray itself is an optional dependency (``pip install deepexposure[ray]``).

On every engine:

- results come back **in input order** (a finished item waits for the ones before it), so the report
  of a parallel run is the one of a serial run;
- at most ``window`` items are in flight (default 4 per worker): memory is bounded by the workers'
  one-item-at-a-time footprint and a few small results, whatever the number of items;
- each item is submitted once. Per-item errors are the function's business: it returns them as
  values. An exception it raises anyway stops an in-process run (as any bug does) and fails just that
  item on the parallel engines (:class:`ItemFailed` with its type and message). An item whose worker *process* died (killed, out of memory, node lost) comes back as
  :class:`ItemFailed`; on Ray it is first submitted again, up to ``retries`` times, with
  ``retry=True`` so the function can tell a retry from a first attempt (the crashed attempt may have
  written part of its outputs). Ray's own task retries are off, so no item ever runs twice at once.

The payload (e.g. the retouching method and the list of protected inputs) is sent to each worker
once, not with every item: pickled into each worker process at start, or put into Ray's object
store once and unpickled once per Ray worker.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = ["Engine", "ItemFailed", "ordered_map", "ray_available", "default_jobs"]

T = TypeVar("T")
R = TypeVar("R")

#: ``work(payload, item, retry) -> result``: module-level (picklable by reference)
Work = Callable[[Any, Any, bool], Any]

ENGINES = ("local", "ray")


@dataclass(frozen=True)
class Engine:
    """Where :func:`ordered_map` runs its items."""

    kind: str = "local"
    """'local' (this machine) or 'ray' (a Ray cluster)"""
    jobs: int = 1
    """local: worker processes (1 = in this process, 0 = one per core); ray without address: the local cluster's CPUs (0 = all cores)"""
    address: str | None = None
    """ray: the cluster to join (e.g. 'ray://head:10001' or 'auto'); None starts a local one"""
    retries: int = 2
    """ray: times an item whose worker or node died is submitted again"""
    window: int = 0
    """items in flight at most (0: 4 per worker)"""

    def __post_init__(self):
        if self.kind not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {self.kind!r}")
        if self.jobs < 0:
            raise ValueError(f"jobs must be >= 0 (0 = one per core), got {self.jobs}")
        if self.retries < 0:
            raise ValueError(f"retries must be >= 0, got {self.retries}")
        if self.window < 0:
            raise ValueError(f"window must be >= 0, got {self.window}")

    @property
    def workers(self) -> int:
        """Worker count for a local engine (``jobs``, 0 -> the cores this process may use)."""
        return self.jobs or default_jobs()


@dataclass(frozen=True)
class ItemFailed:
    """An item whose worker died (after the retries, on Ray); ``reason`` is one line."""

    reason: str


def default_jobs() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def ray_available() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def ordered_map(work: Work, payload: Any, items: Iterable[T], engine: Engine = Engine(),
                on_result: Callable[[], None] | None = None) -> Iterator[tuple[T, Any]]:
    """Yield ``(item, work(payload, item, retry=False))`` for every item, in the order of ``items``.

    ``work`` and ``payload`` must be picklable for the parallel engines (``work`` a module-level
    function). A result is :class:`ItemFailed` when the item's worker died (see the module docstring).
    ``on_result`` is called once per finished item, in completion order (a progress bar).
    """
    if engine.kind == "ray":
        yield from _ray_map(work, payload, items, engine, on_result)
    elif engine.workers == 1:
        for item in items:
            res = work(payload, item, False)
            if on_result:
                on_result()
            yield item, res
    else:
        yield from _process_map(work, payload, items, engine, on_result)


def _in_order(items: Iterable[T], window: int, submit: Callable[[T], Any], finish: Callable[[T, Any], Any]) -> Iterator[tuple[T, Any]]:
    """Submit up to ``window`` items ahead of the oldest unfinished one; yield ``(item, finish(item, handle))`` in order."""
    pending: deque = deque()
    for item in items:
        pending.append((item, submit(item)))
        if len(pending) >= window:
            it, h = pending.popleft()
            yield it, finish(it, h)
    while pending:
        it, h = pending.popleft()
        yield it, finish(it, h)


def _one_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"


# -- worker processes ---------------------------------------------------------------------------
_PAYLOAD: dict[str, Any] = {}


def _process_init(payload: Any, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    _PAYLOAD["local"] = payload


def _process_call(work: Work, item: Any) -> Any:
    return work(_PAYLOAD["local"], item, False)


def _process_map(work: Work, payload: Any, items: Iterable[T], engine: Engine, on_result) -> Iterator[tuple[T, Any]]:
    import multiprocessing
    from concurrent.futures import Future, ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    n = engine.workers
    threads = max(1, default_jobs() // n)
    # spawn, not fork: forking a process whose torch thread pools already run can deadlock
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=n, mp_context=ctx, initializer=_process_init, initargs=(payload, threads)) as pool:
        def submit(item) -> Future:
            fut = pool.submit(_process_call, work, item)
            if on_result:
                fut.add_done_callback(lambda _f: on_result())
            return fut

        def finish(item, fut: Future) -> Any:
            try:
                return fut.result()
            except BrokenProcessPool as e:
                return ItemFailed(f"a worker process died ({e or 'killed'})")
            except Exception as e:  # the function raised: one item fails, the batch goes on
                return ItemFailed(_one_line(e))

        try:
            yield from _in_order(items, engine.window or 4 * n, submit, finish)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise


# -- Ray ------------------------------------------------------------------------------------------
_RAY_PAYLOADS: dict[str, Any] = {}


def _ray_call(key: str, payload_ref: list, work: Work, item: Any, retry: bool) -> Any:
    """The Ray task: unpickle the payload once per worker process (cached by the run's key), then work."""
    if key not in _RAY_PAYLOADS:
        import ray

        _RAY_PAYLOADS.clear()  # one run's payload at a time per worker
        _RAY_PAYLOADS[key] = ray.get(payload_ref[0])
    return work(_RAY_PAYLOADS[key], item, retry)


def ray_connect(engine: Engine) -> bool:
    """``ray.init`` for ``engine`` unless Ray is already initialised; returns whether this call started it.

    Raises ImportError (one line) when Ray is not installed.
    """
    try:
        import ray
    except ImportError:
        raise ImportError("--engine ray needs Ray: pip install 'deepexposure[ray]'") from None
    if ray.is_initialized():
        return False
    opts: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False, "include_dashboard": False}
    if engine.address:
        opts["address"] = engine.address
    else:
        opts["num_cpus"] = engine.jobs or default_jobs()
    ray.init(**opts)
    return True


def _ray_map(work: Work, payload: Any, items: Iterable[T], engine: Engine, on_result) -> Iterator[tuple[T, Any]]:
    import ray
    from ray.exceptions import RayError, RayTaskError

    started = ray_connect(engine)
    try:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        task = ray.remote(max_retries=0, num_cpus=1)(_ray_call)  # retries are ours: see the module docstring
        key = uuid.uuid4().hex
        payload_ref = [ray.put(payload)]  # in a list: Ray resolves only top-level ObjectRef arguments

        def submit(item, retry: bool = False):
            ref = task.remote(key, payload_ref, work, item, retry)
            return ref

        def finish(item, ref) -> Any:
            attempt = 0
            while True:
                try:
                    res = ray.get(ref)
                    break
                except RayTaskError as e:  # the function raised: report it, a retry would raise again
                    cause = e.cause if isinstance(getattr(e, "cause", None), BaseException) else e
                    res = ItemFailed(_one_line(cause))
                    break
                except RayError as e:  # the worker or its node died
                    if attempt >= engine.retries:
                        res = ItemFailed(f"after {attempt + 1} attempt(s): {_one_line(e)}")
                        break
                    attempt += 1
                    ref = submit(item, retry=True)
            if on_result:
                on_result()
            return res

        yield from _in_order(items, engine.window or 4 * cpus, submit, finish)
    finally:
        if started:
            ray.shutdown()
