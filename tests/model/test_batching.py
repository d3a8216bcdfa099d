"""Dynamic batching: requests arriving while a forward pass runs share the next one."""

from __future__ import annotations

import asyncio
import threading

import pytest

from model.batching import MicroBatcher, Overloaded


class RecordingModel:
    """Stands in for the forward pass: upper-cases texts, records each batch, can hold the first one."""

    def __init__(self, hold_first: bool = False):
        self.batches: list[list[str]] = []
        self.first_started = threading.Event()
        self.release = threading.Event()
        if not hold_first:
            self.release.set()

    def __call__(self, texts: list[str]) -> list[str]:
        self.batches.append(list(texts))
        self.first_started.set()
        self.release.wait(timeout=10)
        if "boom" in texts:
            raise RuntimeError("forward pass failed")
        return [text.upper() for text in texts]


async def wait_until(event: threading.Event) -> None:
    await asyncio.get_running_loop().run_in_executor(None, event.wait, 10)


async def until(condition, what: str, timeout: float = 10) -> None:
    """Let the other tasks run until `condition()` holds (a handshake: no fixed pause)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f"never {what}"
        await asyncio.sleep(0)


def test_a_lone_request_runs_at_once_and_gets_its_results():
    model = RecordingModel()

    async def scenario():
        batcher = MicroBatcher(model, max_batch_size=8)
        try:
            return await batcher.submit(["a", "b"])
        finally:
            batcher.close()

    assert asyncio.run(scenario()) == ["A", "B"]
    assert model.batches == [["a", "b"]]


def test_requests_queued_during_a_forward_pass_share_the_next_one():
    model = RecordingModel(hold_first=True)
    sizes: list[int] = []

    async def scenario():
        batcher = MicroBatcher(model, max_batch_size=8, on_batch=sizes.append)
        first = asyncio.create_task(batcher.submit(["first"]))
        await wait_until(model.first_started)
        queued = [asyncio.create_task(batcher.submit([f"q{n}a", f"q{n}b"])) for n in range(3)]
        await until(lambda: batcher.backlog() == 6, "queued while the first pass is held")
        model.release.set()
        try:
            return await first, await asyncio.gather(*queued)
        finally:
            batcher.close()

    first, queued = asyncio.run(scenario())
    assert first == ["FIRST"]
    assert queued == [[f"Q{n}A", f"Q{n}B"] for n in range(3)]
    assert model.batches == [["first"], ["q0a", "q0b", "q1a", "q1b", "q2a", "q2b"]]
    assert sizes == [1, 6]


def test_batches_respect_the_size_limit_and_keep_a_request_whole():
    model = RecordingModel(hold_first=True)

    async def scenario():
        batcher = MicroBatcher(model, max_batch_size=4)
        first = asyncio.create_task(batcher.submit(["first"]))
        await wait_until(model.first_started)
        queued = [
            asyncio.create_task(batcher.submit(texts)) for texts in (["a", "b", "c"], ["d", "e"], ["f"] * 6)
        ]
        await until(lambda: batcher.backlog() == 11, "queued while the first pass is held")
        model.release.set()
        try:
            await first
            return await asyncio.gather(*queued)
        finally:
            batcher.close()

    results = asyncio.run(scenario())
    assert results == [["A", "B", "C"], ["D", "E"], ["F"] * 6]
    # 3 + 2 > 4: separate passes; a 6-text request is bigger than the limit and runs alone, whole.
    assert model.batches[1:] == [["a", "b", "c"], ["d", "e"], ["f"] * 6]


def test_a_failed_forward_pass_fails_only_its_requests_and_the_batcher_goes_on():
    model = RecordingModel()

    async def scenario():
        batcher = MicroBatcher(model, max_batch_size=8)
        try:
            with pytest.raises(RuntimeError, match="forward pass failed"):
                await batcher.submit(["boom"])
            return await batcher.submit(["fine"])
        finally:
            batcher.close()

    assert asyncio.run(scenario()) == ["FINE"]


def test_a_cancelled_request_is_dropped_before_its_turn():
    model = RecordingModel(hold_first=True)

    async def scenario():
        batcher = MicroBatcher(model, max_batch_size=8)
        first = asyncio.create_task(batcher.submit(["first"]))
        await wait_until(model.first_started)
        gone = asyncio.create_task(batcher.submit(["client went away"]))
        kept = asyncio.create_task(batcher.submit(["kept"]))
        await until(lambda: batcher.backlog() == 2, "queued while the first pass is held")
        gone.cancel()
        model.release.set()
        try:
            await first
            return await kept
        finally:
            batcher.close()

    assert asyncio.run(scenario()) == ["KEPT"]
    assert model.batches == [["first"], ["kept"]]


def test_wait_window_gathers_requests_until_the_batch_is_full():
    model = RecordingModel()

    async def scenario():
        # an hour's window: only a full batch (3 texts) can end it within the test's timeout
        batcher = MicroBatcher(model, max_batch_size=3, max_wait_seconds=3600)
        try:
            first = asyncio.create_task(batcher.submit(["a"]))
            await until(lambda: batcher.backlog() == 1, "queued the first request")
            second = asyncio.create_task(batcher.submit(["b"]))
            await until(lambda: batcher.backlog() == 2, "queued the second request")
            assert model.batches == [], "a forward pass started before the batch was full"
            return await asyncio.wait_for(asyncio.gather(first, second, batcher.submit(["c"])), 30)
        finally:
            batcher.close()

    assert asyncio.run(scenario()) == [["A"], ["B"], ["C"]]
    assert model.batches == [["a", "b", "c"]]


def test_a_lone_request_waits_out_the_window_then_runs_alone():
    model = RecordingModel()

    async def scenario():
        batcher = MicroBatcher(model, max_batch_size=8, max_wait_seconds=0.2)
        started = asyncio.get_running_loop().time()
        try:
            return await batcher.submit(["a"]), asyncio.get_running_loop().time() - started
        finally:
            batcher.close()

    result, waited = asyncio.run(scenario())
    assert result == ["A"] and model.batches == [["a"]]
    assert waited >= 0.2


@pytest.mark.parametrize(("size", "wait", "queued"), [(0, 0.0, None), (4, -1.0, None), (4, 0.0, 0)])
def test_invalid_settings_are_refused(size, wait, queued):
    with pytest.raises(ValueError, match="must"):
        MicroBatcher(lambda texts: texts, max_batch_size=size, max_wait_seconds=wait, max_queued_items=queued)


def test_a_full_backlog_refuses_new_requests_at_once_and_serves_the_queued_ones():
    model = RecordingModel(hold_first=True)

    async def scenario():
        batcher = MicroBatcher(model, max_batch_size=8, max_queued_items=3)
        try:
            first = asyncio.create_task(batcher.submit(["running"]))  # in the forward pass, not queued
            await wait_until(model.first_started)
            queued = asyncio.create_task(batcher.submit(["q1", "q2"]))
            await asyncio.sleep(0)
            with pytest.raises(Overloaded, match=r"2 texts already wait for the model \(limit 3\)"):
                await batcher.submit(["one", "too many"])
            fits = asyncio.create_task(batcher.submit(["fits"]))
            await asyncio.sleep(0)
            model.release.set()
            return await asyncio.gather(first, queued, fits)
        finally:
            batcher.close()

    assert asyncio.run(scenario()) == [["RUNNING"], ["Q1", "Q2"], ["FITS"]]
    assert model.batches == [["running"], ["q1", "q2", "fits"]]


def test_a_request_bigger_than_the_backlog_bound_runs_when_nothing_waits():
    async def scenario():
        batcher = MicroBatcher(RecordingModel(), max_batch_size=8, max_queued_items=2)
        try:
            return await batcher.submit(["a", "b", "c"])
        finally:
            batcher.close()

    assert asyncio.run(scenario()) == ["A", "B", "C"]


def test_requests_whose_clients_left_do_not_count_against_the_backlog():
    model = RecordingModel(hold_first=True)

    async def scenario():
        batcher = MicroBatcher(model, max_batch_size=8, max_queued_items=2)
        try:
            first = asyncio.create_task(batcher.submit(["running"]))
            await wait_until(model.first_started)
            gone = asyncio.create_task(batcher.submit(["left", "early"]))
            await asyncio.sleep(0)
            gone.cancel()
            await asyncio.sleep(0)
            kept = asyncio.create_task(batcher.submit(["kept"]))
            await asyncio.sleep(0)
            model.release.set()
            return await asyncio.gather(first, kept)
        finally:
            batcher.close()

    assert asyncio.run(scenario()) == [["RUNNING"], ["KEPT"]]
