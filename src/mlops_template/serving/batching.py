"""Opportunistic micro-batching: small requests waiting on the event loop share one model call.

Under concurrent load, several requests are read and validated while the model is busy with another. The
batcher predicts all the rows waiting in one call instead of one call each: the model's fixed cost per call
(graph set-up, caches gone cold since the last call) is paid once per batch. There is no timer and no added
wait: a batch is whatever arrived by the next turn of the event loop, so a lone request is predicted at once.
If the shared call fails, each request is predicted alone, so only a request that fails by itself sees an error.
A batcher belongs to one event loop (one uvicorn worker): its callers must all run on that loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from mlops_template.serving.predictor import Predictions

Columns = TypeVar("Columns")


class MicroBatcher(Generic[Columns]):
    """Coalesces concurrent `predict` calls of one model (at most `max_rows` rows per call)."""

    def __init__(
        self,
        predict: Callable[[Columns], Predictions],
        merge: Callable[[Sequence[Columns]], Columns],
        max_rows: int,
    ) -> None:
        self._predict, self._merge, self.max_rows = predict, merge, max_rows
        self._waiting: list[tuple[Columns, int, asyncio.Future[Predictions]]] = []
        self._rows = 0
        self._scheduled = False
        self.calls = 0  # model calls made, for tests and the benchmark's report

    async def predict(self, columns: Columns, rows: int) -> Predictions:
        """The predictions of `columns` (`rows` rows), computed together with whatever else is waiting."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Predictions] = loop.create_future()
        self._waiting.append((columns, rows, future))
        self._rows += rows
        if self._rows >= self.max_rows:
            self._run()
        elif not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._run)  # after the callbacks already ready: requests that arrived meanwhile join
        return await future

    def _run(self) -> None:
        self._scheduled = False
        waiting, self._waiting, self._rows = self._waiting, [], 0
        if not waiting:
            return
        self.calls += 1
        if len(waiting) == 1:
            self._settle(*waiting[0])
            return
        try:
            predictions = self._predict(self._merge([columns for columns, _, _ in waiting]))
        except Exception:  # noqa: BLE001 - one request may be the cause: retry each alone, each gets its outcome
            for columns, rows, future in waiting:
                self._settle(columns, rows, future)
            return
        start = 0
        for _, rows, future in waiting:
            if not future.done():  # a caller that went away (cancelled) wants nothing
                future.set_result(predictions.rows(start, start + rows))
            start += rows

    def _settle(self, columns: Columns, rows: int, future: asyncio.Future[Predictions]) -> None:
        try:
            result = self._predict(columns)
        except Exception as exc:  # noqa: BLE001 - raised in the caller's task, where the app handles it
            if not future.done():
                future.set_exception(exc)
            return
        if not future.done():
            future.set_result(result)
