"""Micro-batching: concurrent requests share a model call, each gets its own rows, failures stay isolated."""

import asyncio

import pytest

from mlops_template.serving.batching import MicroBatcher
from mlops_template.serving.predictor import Predictions


class Model:
    """Doubles numbers; refuses negative ones (as a model may refuse a row). Records the size of each call."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def predict(self, rows: list[int]) -> Predictions:
        self.calls.append(len(rows))
        if any(x < 0 for x in rows):
            raise ValueError("negative input")
        return Predictions([2 * x for x in rows], None)


def merge(parts: list[list[int]]) -> list[int]:
    return [x for part in parts for x in part]


def batcher(model: Model, max_rows: int = 64) -> MicroBatcher:
    return MicroBatcher(model.predict, merge, max_rows)


def test_concurrent_requests_share_one_call_and_get_their_own_rows():
    model = Model()
    shared = batcher(model)

    async def main() -> list[Predictions]:
        return await asyncio.gather(*(shared.predict([i, i + 100], 2) for i in range(5)))

    results = asyncio.run(main())
    assert model.calls == [10]  # one call for the five requests
    assert [r.labels for r in results] == [[2 * i, 2 * i + 200] for i in range(5)]
    assert shared.calls == 1


def test_a_lone_request_is_predicted_without_waiting_for_company():
    model = Model()
    shared = batcher(model)

    async def main() -> Predictions:
        return await asyncio.wait_for(shared.predict([3], 1), timeout=1)

    assert asyncio.run(main()).labels == [6]
    assert model.calls == [1]


def test_a_call_never_exceeds_max_rows():
    model = Model()
    shared = batcher(model, max_rows=4)

    async def main() -> list[Predictions]:
        return await asyncio.gather(*(shared.predict([i], 1) for i in range(6)))

    results = asyncio.run(main())
    assert model.calls == [4, 2]
    assert [r.labels for r in results] == [[2 * i] for i in range(6)]


def test_a_failing_request_fails_alone():
    model = Model()
    shared = batcher(model)

    async def main() -> list:
        return await asyncio.gather(shared.predict([1], 1), shared.predict([-1], 1), shared.predict([2], 1),
                                    return_exceptions=True)  # fmt: skip

    good, bad, other = asyncio.run(main())
    assert good.labels == [2] and other.labels == [4]
    assert isinstance(bad, ValueError)
    assert model.calls == [3, 1, 1, 1]  # the shared call failed: each request predicted alone


def test_a_cancelled_caller_does_not_disturb_the_others():
    model = Model()
    shared = batcher(model)

    async def main() -> Predictions:
        gone = asyncio.ensure_future(shared.predict([1], 1))
        kept = asyncio.ensure_future(shared.predict([2], 1))
        await asyncio.sleep(0)  # both are waiting for the batch
        gone.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gone
        return await kept

    assert asyncio.run(main()).labels == [4]
