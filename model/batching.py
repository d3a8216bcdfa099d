"""Dynamic batching: concurrent requests share one forward pass.

Requests arriving while a forward pass runs queue up; when the pass finishes, the queued requests
(up to ``max_batch_size`` texts) run together in the next pass. A lone request runs at once, so a
single client pays no batching delay unless ``max_wait_seconds`` asks the batcher to wait for
company (a wait that ends as soon as ``max_batch_size`` texts are queued). The backlog is bounded:
once ``max_queued_items`` texts wait, new requests are refused with ``Overloaded`` at once (the
server answers 503) instead of queueing work whose clients will have given up long before their
turn. All passes run in one worker thread: the model is never
called concurrently (intra-op threads already use every allowed core), and the event loop stays
free to accept requests.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any


class Overloaded(Exception):
    """The backlog is full: the request was not queued."""


@dataclass
class _Job:
    items: list[Any]
    future: asyncio.Future = field(repr=False)


class MicroBatcher:
    """Runs ``run_batch(items) -> results`` (one result per item, same order) on batches of jobs."""

    def __init__(
        self,
        run_batch: Callable[[list[Any]], Sequence[Any]],
        max_batch_size: int = 32,
        max_wait_seconds: float = 0.0,
        on_batch: Callable[[int], None] | None = None,
        thread_initializer: Callable[[], None] | None = None,
        max_queued_items: int | None = None,
    ):
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
        if max_queued_items is not None and max_queued_items < 1:
            raise ValueError(f"max_queued_items must be at least 1, got {max_queued_items}")
        if max_wait_seconds < 0:
            raise ValueError(f"max_wait_seconds must not be negative, got {max_wait_seconds}")
        self.run_batch = run_batch
        self.max_batch_size = max_batch_size
        self.max_wait_seconds = max_wait_seconds
        self.on_batch = on_batch
        self.max_queued_items = max_queued_items
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="forward-pass", initializer=thread_initializer
        )
        self._queue: deque[_Job] = deque()
        self._wakeup: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None

    async def submit(self, items: list[Any]) -> list[Any]:
        """Queue ``items`` (kept together in one batch) and wait for their results; raises ``Overloaded``
        when they would take the backlog past ``max_queued_items`` (a request alone may exceed it)."""
        if not items:
            return []
        limit = self.max_queued_items
        if limit is not None:
            waiting = self.backlog()
            if waiting and waiting + len(items) > limit:
                raise Overloaded(
                    f"server busy: {waiting} texts already wait for the model (limit {limit}); "
                    "retry later or add replicas"
                )
        loop = asyncio.get_running_loop()
        job = _Job(list(items), loop.create_future())
        self._queue.append(job)
        self._ensure_worker()
        self._wakeup.set()
        return await job.future

    def backlog(self) -> int:
        """Texts waiting for a forward pass (not those of requests whose client has gone)."""
        return sum(len(job.items) for job in self._queue if not job.future.done())

    def _ensure_worker(self) -> None:
        if self._worker is None or self._worker.done():
            self._wakeup = asyncio.Event()
            self._worker = asyncio.get_running_loop().create_task(self._work(), name="micro-batcher")

    def _take_batch(self) -> list[_Job]:
        """The oldest queued jobs, up to max_batch_size items (a bigger single job goes alone)."""
        batch: list[_Job] = []
        size = 0
        while self._queue:
            job = self._queue[0]
            if job.future.done():  # the client went away (request cancelled) before its turn
                self._queue.popleft()
                continue
            if batch and size + len(job.items) > self.max_batch_size:
                break
            self._queue.popleft()
            batch.append(job)
            size += len(job.items)
        return batch

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                if self.max_wait_seconds:
                    await self._gather(loop.time() + self.max_wait_seconds)
                batch = self._take_batch()
                if not batch:
                    continue
                items = [item for job in batch for item in job.items]
                if self.on_batch is not None:
                    self.on_batch(len(items))
                try:
                    results = await loop.run_in_executor(self._executor, self.run_batch, items)
                    if len(results) != len(items):
                        raise RuntimeError(f"{len(results)} results for {len(items)} texts")
                except Exception as error:  # the error belongs to the requests of this batch
                    for job in batch:
                        if not job.future.done():
                            job.future.set_exception(error)
                    continue
                start = 0
                for job in batch:
                    end = start + len(job.items)
                    if not job.future.done():
                        job.future.set_result(list(results[start:end]))
                    start = end

    async def _gather(self, deadline: float) -> None:
        """Wait for company until `deadline` (the loop's clock), or less: once a full batch waits."""
        while self.backlog() < self.max_batch_size:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return
            self._wakeup.clear()  # set again by the next submit()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                return

    def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)
