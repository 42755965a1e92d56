"""Iterators that run ahead of their consumer in a background thread.

The loader's Parquet reads and decoding are pyarrow and numpy work that releases the GIL, so a
thread overlaps them with training at no copy: a batch handed over is the same tensors. Worker
processes (torch's DataLoader) pay a process start and a file-descriptor transfer per tensor,
which cost more than decoding the batch on a 2-core host.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable, Iterator, Sequence
from queue import Full, Queue
from typing import TypeVar

T = TypeVar("T")

_POLL_SECONDS = 0.1  # how soon a producer notices that its consumer has gone


class _End:
    """Sentinel: the producer finished, with `error` if it failed."""

    def __init__(self, error: BaseException | None = None):
        self.error = error


def background(items: Iterable[T], depth: int = 1, name: str = "loader") -> Iterator[T]:
    """`items`, produced from now on by a daemon thread that runs up to `depth` items ahead.

    An exception in the thread is raised to the consumer; once the consumer is closed or
    collected, the thread stops at its next item.
    """
    queue: Queue = Queue(maxsize=max(depth, 1))
    stop = threading.Event()

    def offer(item: object) -> bool:
        while not stop.is_set():
            try:
                queue.put(item, timeout=_POLL_SECONDS)
                return True
            except Full:
                continue
        return False

    def produce() -> None:
        iterator = iter(items)
        try:
            for item in iterator:
                if not offer(item):
                    return
            offer(_End())
        except BaseException as error:  # handed to the consumer, which raises it
            offer(_End(error))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    threading.Thread(target=produce, name=name, daemon=True).start()
    consumer = _consume(queue, stop)
    weakref.finalize(consumer, stop.set)  # also when the consumer is dropped unstarted
    return consumer


def _consume(queue: Queue, stop: threading.Event) -> Iterator:
    try:
        while True:
            item = queue.get()  # the producer always ends with an _End while we listen
            if isinstance(item, _End):
                if item.error is not None:
                    raise item.error
                return
            yield item
    finally:
        stop.set()


def round_robin(iterators: Sequence[Iterator[T]]) -> Iterator[T]:
    """One item of each iterator in turn, skipping exhausted ones (a DataLoader's worker order)."""
    active = list(iterators)
    while active:
        for iterator in list(active):
            try:
                yield next(iterator)
            except StopIteration:
                active.remove(iterator)
