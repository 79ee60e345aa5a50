"""One Redis pipeline per event-loop turn, for the gateway's commands on the hot path.

The handshakes (and resumes) that become ready in one turn of the event loop
all need Redis; sending each its own round trip would cost a storm of clients
one round trip each. :class:`LoopBatcher` queues what they ask for until the
end of the turn (``loop.call_soon`` runs after every callback already
scheduled) and sends it all as one **non-transactional** pipeline: each
command is still its own atomic command (``GETDEL`` spends a token or a
ticket once, whatever else is in the pipeline).

A caller asks for a **group** of commands and gets the list of their replies.
Fail closed: when the pipeline fails, or any command of a group does, that
group's future raises :class:`~wsauth.shared.core.errors.Unavailable` — never
a partial answer — and every waiter gets an answer, also on shutdown
(:meth:`LoopBatcher.close`).
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio

from wsauth.shared.core.errors import Unavailable

Command = tuple[Any, ...]


class LoopBatcher:
    """Queue groups of Redis commands; send each loop turn's as one pipeline."""

    def __init__(self, client: redis.asyncio.Redis) -> None:
        self._client = client
        # Groups waiting for the next pipeline: (commands, future of their replies).
        self._queue: list[tuple[tuple[Command, ...], asyncio.Future[list[Any]]]] = []
        self._batches: set[asyncio.Task[None]] = set()

    def send(self, *commands: Command) -> asyncio.Future[list[Any]]:
        """Queue ``commands`` (each a tuple of ``execute_command`` arguments) for the
        pipeline sent at the end of this loop turn; the future's result is the list of
        their replies, in order.

        The future raises Unavailable when Redis failed or did not answer in time.
        """
        loop = asyncio.get_running_loop()
        reply: asyncio.Future[list[Any]] = loop.create_future()
        self._queue.append((commands, reply))
        if len(self._queue) == 1:
            # call_soon runs after every callback already scheduled for this
            # turn: the callers that are ready now all join one batch.
            loop.call_soon(self._send_batch)
        return reply

    def _send_batch(self) -> None:
        batch, self._queue = self._queue, []
        if batch:
            task = asyncio.ensure_future(self._execute(batch))
            self._batches.add(task)
            task.add_done_callback(self._batches.discard)

    async def _execute(
        self, batch: list[tuple[tuple[Command, ...], asyncio.Future[list[Any]]]]
    ) -> None:
        replies: list[Any] = []
        failure: BaseException | None = None
        try:
            pipe = self._client.pipeline(transaction=False)
            for commands, _reply in batch:
                for command in commands:
                    pipe.execute_command(*command)
            replies = await pipe.execute(raise_on_error=False)
        except BaseException as error:  # every waiter must get an answer
            failure = error
        start = 0
        for commands, reply in batch:
            count = len(commands)
            values = replies[start : start + count]
            start += count
            if reply.done():  # its caller was cancelled meanwhile
                continue
            bad = next((value for value in values if isinstance(value, BaseException)), None)
            if failure is None and len(values) == count and bad is None:
                reply.set_result(values)
            else:
                cause = failure or bad
                reply.set_exception(Unavailable(type(cause).__name__ if cause else "no reply"))
        if isinstance(failure, asyncio.CancelledError):
            raise failure

    async def close(self) -> None:
        """Send what is still queued and wait (at most 5 s) until every waiter has its answer."""
        self._send_batch()
        if self._batches:
            await asyncio.wait(set(self._batches), timeout=5.0)


__all__ = ["Command", "LoopBatcher"]
