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
  :class:`ItemFailed` after it was submitted again, up to ``retries`` times, with ``retry=True`` so
  the function can tell a retry from a first attempt (the crashed attempt may have written part of
  its outputs). Only the dead worker's item is retried, and Ray's own task retries are off, so no
  item runs twice at once and no finished item runs again.

The payload (e.g. the retouching method and the list of protected inputs) is sent to each worker
once, not with every item: pickled into each worker process at start, or put into Ray's object
store once and unpickled once per Ray worker.
"""

from __future__ import annotations

import logging
import os
import sys
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
    """times an item whose worker process (or node) died is submitted again (worker processes and Ray)"""
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
def _worker_main(conn, work: Work, payload: Any, threads: int) -> None:
    """A worker process: receive ``(ticket, item, retry)``, send ``(ticket, ok, result or error line)``; None ends it."""
    torch = sys.modules.get("torch")  # imported with the payload (e.g. a model); else set for a later import
    if torch is not None:
        torch.set_num_threads(threads)
    else:
        os.environ["OMP_NUM_THREADS"] = str(threads)
    while True:
        msg = conn.recv()
        if msg is None:
            break
        ticket, item, retry = msg
        try:
            out = (ticket, True, work(payload, item, retry))
        except Exception as e:  # the function raised: one item fails, the batch goes on
            out = (ticket, False, _one_line(e))
        conn.send(out)
    conn.close()


class _Worker:
    """One worker process with its pipe; ``job`` is ``(ticket, item, attempt)`` while it works on one."""

    def __init__(self, ctx, work: Work, payload: Any, threads: int):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, work, payload, threads), daemon=True)
        self.proc.start()
        child.close()
        self.job: tuple[int, Any, int] | None = None

    def stop(self, wait: bool) -> None:
        if wait and self.proc.is_alive():
            try:
                self.conn.send(None)
            except OSError:
                pass
            self.proc.join(timeout=10)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        self.conn.close()


def _process_map(work: Work, payload: Any, items: Iterable[T], engine: Engine, on_result) -> Iterator[tuple[T, Any]]:
    """N worker processes, each fed one item at a time; a dead worker is replaced and only its item retried.

    (Python's ``ProcessPoolExecutor`` fails *every* pending item when one worker dies, so an item that
    another worker had finished, outputs written, would be run a second time.)
    """
    import multiprocessing
    from multiprocessing.connection import wait

    n = engine.workers
    threads = max(1, default_jobs() // n)
    # spawn, not fork: forking a process whose torch thread pools already run can deadlock
    ctx = multiprocessing.get_context("spawn")
    workers = [_Worker(ctx, work, payload, threads) for _ in range(n)]
    window = engine.window or 4 * n
    source = iter(items)
    held: dict[int, Any] = {}  # ticket -> item, until it is yielded
    results: dict[int, Any] = {}
    retry_q: deque[tuple[int, Any, int]] = deque()
    next_ticket = next_out = 0
    exhausted = ok = False
    try:
        while True:
            for w in workers:  # give every idle worker an item: retries first, then new ones within the window
                if w.job is not None:
                    continue
                if retry_q:
                    w.job = retry_q.popleft()
                elif not exhausted and next_ticket - next_out < window:
                    try:
                        item = next(source)
                    except StopIteration:
                        exhausted = True
                        continue
                    held[next_ticket] = item
                    w.job = (next_ticket, item, 0)
                    next_ticket += 1
                else:
                    continue
                w.conn.send((w.job[0], w.job[1], w.job[2] > 0))
            while next_out in results:
                yield held.pop(next_out), results.pop(next_out)
                next_out += 1
            busy = [w for w in workers if w.job is not None]
            if not busy:
                if exhausted and not retry_q:
                    break
                continue
            ready = set(wait([w.conn for w in busy] + [w.proc.sentinel for w in busy]))
            for i, w in enumerate(workers):
                if w.job is None or not (w.conn in ready or w.proc.sentinel in ready):
                    continue
                ticket, item, attempt = w.job
                try:
                    got, good, value = w.conn.recv()
                    results[got] = value if good else ItemFailed(value)
                    w.job = None
                    if on_result:
                        on_result()
                    continue
                except (EOFError, OSError):  # the worker died with this item
                    pass
                code = w.proc.exitcode
                w.stop(wait=False)
                workers[i] = _Worker(ctx, work, payload, threads)
                if attempt >= engine.retries:
                    results[ticket] = ItemFailed(f"its worker process died (exit code {code}), {attempt + 1} attempt(s)")
                    if on_result:
                        on_result()
                else:
                    retry_q.append((ticket, item, attempt + 1))
        ok = True
    finally:
        for w in workers:
            w.stop(wait=ok)


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
