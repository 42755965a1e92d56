"""Iterators that run ahead of their consumer in a background thread.

The loader's Parquet reads and decoding are pyarrow and numpy work that releases the GIL, so a
thread overlaps them with training at no copy: a batch handed over is the same tensors. Worker
processes (torch's DataLoader) pay a process start and a file-descriptor transfer per tensor,
which cost more than decoding the batch on a 2-core host.

A producer never outlives its consumer's close, nor the interpreter: closing the consumer, and
interpreter exit, stop the producer and wait for the item it is producing. A daemon thread left
inside a pyarrow read when Python finalizes is ended by `pthread_exit`, whose unwinding through
pyarrow's C++ frames aborts the process ("terminate called without an active exception").
"""

from __future__ import annotations

import heapq
import threading
import weakref
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from queue import Empty, Full, Queue
from typing import TypeVar

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)

_POLL_SECONDS = 0.1  # how soon a producer notices that its consumer has gone
_JOIN_SECONDS = 60.0  # the longest a close or exit waits for the item being produced


class _End:
    """Sentinel: the producer finished, with `error` if it failed."""

    def __init__(self, error: BaseException | None = None):
        self.error = error


def background(items: Iterable[T], depth: int = 1, name: str = "loader") -> Iterator[T]:
    """`items`, produced from now on by a daemon thread that runs up to `depth` items ahead.

    An exception in the thread is raised to the consumer. Closing the consumer stops the
    thread and waits for the item it is producing, as does collecting the consumer, started
    or not; interpreter exit stops and waits for every producer.
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

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    consumer = _consume(queue, stop, thread)
    # When the consumer is collected, started or not, and at interpreter exit (a finalizer's
    # default) if it is still alive then.
    weakref.finalize(consumer, _stop, thread, stop)
    return consumer


def _stop(thread: threading.Thread, stop: threading.Event) -> None:
    """Stop a producer and wait for the item it is producing (not from the producer itself:
    its own iterator chain may close a consumer it produces from)."""
    stop.set()
    if thread is not threading.current_thread():
        thread.join(_JOIN_SECONDS)


def _consume(queue: Queue, stop: threading.Event, thread: threading.Thread) -> Iterator:
    try:
        while True:
            try:
                item = queue.get(timeout=_POLL_SECONDS)
            except Empty:
                if stop.is_set():  # stopped from outside (interpreter exit): nothing more comes
                    return
                continue
            if isinstance(item, _End):
                if item.error is not None:
                    raise item.error
                return
            yield item
    finally:
        _stop(thread, stop)


def round_robin(iterators: Sequence[Iterator[T]]) -> Iterator[T]:
    """One item of each iterator in turn, skipping exhausted ones (a DataLoader's worker order)."""
    active = list(iterators)
    while active:
        for iterator in list(active):
            try:
                yield next(iterator)
            except StopIteration:
                active.remove(iterator)


def fewest_first(
    streams: Sequence[Iterator[T]], size: Callable[[T], int]
) -> Iterator[tuple[int, T]]:
    """(stream number, item) from several streams, the next item always from the stream whose
    items so far add up to the smallest `size` (the lower number on ties), until all end.

    Streams consumed in turn at the same rate (`round_robin` over batches of equal size) then
    find their next item produced in about the order they need it."""
    heap = [(0, number) for number in range(len(streams))]
    while heap:
        total, number = heapq.heappop(heap)
        item = next(streams[number], None)
        if item is not None:
            yield number, item
            heapq.heappush(heap, (total + size(item), number))


def demultiplex(items: Iterable[tuple[K, T]], keys: Sequence[K]) -> list[Iterator[T]]:
    """One iterator per key over the items tagged with it, all drawn from one stream of
    `(key, item)`: an iterator that needs its next item keeps the other keys' items it meets
    on the way until their iterators ask for them."""
    stream = iter(items)
    kept: dict[K, deque[T]] = {key: deque() for key in keys}

    def of(key: K) -> Iterator[T]:
        own = kept[key]
        while True:
            while not own:
                tagged = next(stream, None)
                if tagged is None:
                    return
                kept[tagged[0]].append(tagged[1])
            yield own.popleft()

    return [of(key) for key in keys]
