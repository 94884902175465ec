"""Requests that arrive together run through the network together.

Each request waits in a queue; one task takes the first waiting request, gathers those that
arrive within `max_wait_s` (up to `max_batch`), and runs them as one batch in a worker thread,
so N concurrent clients cost about one forward pass, not N.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any


class MicroBatcher:
    def __init__(self, predict: Callable[[Sequence[Any]], Sequence[Any]], max_batch: int, max_wait_s: float) -> None:
        self.predict = predict
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._queue: asyncio.Queue[tuple[Any, asyncio.Future]] = asyncio.Queue()

    async def submit(self, item: Any) -> Any:
        """The prediction for `item`, once its batch has run."""
        future = asyncio.get_running_loop().create_future()
        await self._queue.put((item, future))
        return await future

    async def run_forever(self) -> None:
        """The batching loop (a background task for the server's lifetime)."""
        while True:
            batch = [await self._queue.get()]
            deadline = asyncio.get_running_loop().time() + self.max_wait_s
            while len(batch) < self.max_batch:
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), remaining))
                except TimeoutError:
                    break
            await self._run(batch)

    async def _run(self, batch: list[tuple[Any, asyncio.Future]]) -> None:
        try:
            results = await asyncio.to_thread(self.predict, [item for item, _ in batch])
        except Exception as error:  # every waiting request hears it; the loop goes on
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)
