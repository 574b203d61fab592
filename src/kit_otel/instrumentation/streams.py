"""Streams returned by instrumented calls (sync and async iterators): each item reaches the
invocation as it passes, and the call ends when the stream is exhausted, closed or fails."""

from __future__ import annotations

from typing import Any

import wrapt

from ._core import leave
from .invocations import Invocation


def wrap_stream(obj: Any, inv: Invocation) -> Any:
    inv.streaming = True
    if hasattr(obj, "__anext__"):
        return _AsyncStream(obj, inv)
    return _SyncStream(obj, inv)


class _SyncStream(wrapt.ObjectProxy):
    """A generator/iterator whose instrumented call ends when it is exhausted, closed, fails or
    is garbage-collected — exactly once. Each step runs with the call's span current."""

    def __init__(self, wrapped: Any, inv: Invocation):
        super().__init__(wrapped)
        self._self_inv = inv

    def __iter__(self):
        return self

    def _step(self, method: str, *args: Any) -> Any:
        inv = self._self_inv
        if inv.done:
            return getattr(self.__wrapped__, method)(*args)
        token = inv.enter()
        try:
            item = getattr(self.__wrapped__, method)(*args)
        except StopIteration:
            leave(token)
            inv.end_stream("exhausted")
            raise
        except BaseException as exc:
            leave(token)
            if isinstance(exc, GeneratorExit):
                inv.end_stream("closed")
            else:
                inv.fail(exc)
            raise
        leave(token)
        inv.item(item)
        return item

    def __next__(self):
        return self._step("__next__")

    def send(self, value):
        return self._step("send", value)

    def throw(self, *args):
        return self._step("throw", *args)

    def close(self):
        inv = self._self_inv
        try:
            close = getattr(self.__wrapped__, "close", None)
            if close is not None:
                close()
        finally:
            if not inv.done:
                inv.end_stream("closed")

    def __enter__(self):
        entered = self.__wrapped__.__enter__()
        return self if entered is self.__wrapped__ else entered

    def __exit__(self, *exc_info):
        try:
            return self.__wrapped__.__exit__(*exc_info)
        finally:
            if not self._self_inv.done:
                self._self_inv.end_stream("closed")

    def __del__(self):
        inv = getattr(self, "_self_inv", None)
        if inv is not None and not inv.done:
            inv.end_stream("abandoned")


class _AsyncStream(wrapt.ObjectProxy):
    """The async twin of `_SyncStream`."""

    def __init__(self, wrapped: Any, inv: Invocation):
        super().__init__(wrapped)
        self._self_inv = inv

    def __aiter__(self):
        return self

    async def _step(self, method: str, *args: Any) -> Any:
        inv = self._self_inv
        if inv.done:
            return await getattr(self.__wrapped__, method)(*args)
        token = inv.enter()
        try:
            item = await getattr(self.__wrapped__, method)(*args)
        except StopAsyncIteration:
            leave(token)
            inv.end_stream("exhausted")
            raise
        except BaseException as exc:
            leave(token)
            if isinstance(exc, GeneratorExit):
                inv.end_stream("closed")
            else:
                inv.fail(exc)
            raise
        leave(token)
        inv.item(item)
        return item

    def __anext__(self):
        return self._step("__anext__")

    def asend(self, value):
        return self._step("asend", value)

    def athrow(self, *args):
        return self._step("athrow", *args)

    async def aclose(self):
        inv = self._self_inv
        try:
            aclose = getattr(self.__wrapped__, "aclose", None)
            if aclose is not None:
                await aclose()
        finally:
            if not inv.done:
                inv.end_stream("closed")

    async def __aenter__(self):
        entered = await self.__wrapped__.__aenter__()
        return self if entered is self.__wrapped__ else entered

    async def __aexit__(self, *exc_info):
        try:
            return await self.__wrapped__.__aexit__(*exc_info)
        finally:
            if not self._self_inv.done:
                self._self_inv.end_stream("closed")

    def __del__(self):
        inv = getattr(self, "_self_inv", None)
        if inv is not None and not inv.done:
            inv.end_stream("abandoned")
