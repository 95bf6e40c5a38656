"""The stdio wire without worker threads: JSON-RPC lines over non-blocking stdin and stdout.

The SDK's ``stdio_server`` reads and writes through ``anyio.wrap_file``: every line read, every
write and every flush is a hop to a worker thread and back (three per request). When both
standard streams are pipes or sockets, as an MCP host gives them, ``stdio()`` serves the same
streams of ``SessionMessage`` (or the ``Exception`` a line that is not a JSON-RPC message
raised) from the event loop instead; otherwise (a file, a terminal, Windows) it is the SDK's.

As in the SDK, the wire is served from private duplicates of fds 0 and 1 while fd 0 reads the
null device and fd 1 writes to stderr, so stray reads and prints cannot touch the wire; both
are restored on exit.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import anyio
import mcp.types as types
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.server.stdio import stdio_server
from mcp.shared.message import SessionMessage

CHUNK = 1 << 16
MAX_LINE = 64 << 20  # longer is not a message the gateway could take (arguments <= 1 MiB)

Streams = tuple[
    MemoryObjectReceiveStream[SessionMessage | Exception], MemoryObjectSendStream[SessionMessage]
]


class LineTooLong(ValueError):
    """A line over ``MAX_LINE`` bytes: dropped, answered like any line that is not JSON-RPC."""


def stdio() -> AbstractAsyncContextManager[Any]:
    """The (read, write) streams of the stdio wire: the event-loop transport on pipes and
    sockets, else the SDK's."""
    if sys.platform == "win32" or not (_is_pipe(0) and _is_pipe(1)):
        return stdio_server()
    return _pipes()


def _is_pipe(fd: int) -> bool:
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def _claim(fd: int, diversion: int) -> int:
    """A private non-blocking duplicate of ``fd``, with ``fd`` itself pointed at
    ``diversion``."""
    import fcntl  # POSIX only, as this transport

    # above the standard range, and close-on-exec: no child gets the wire
    private = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
    os.dup2(diversion, fd)
    os.close(diversion)
    os.set_blocking(private, False)
    return private


def _stderr_or_null() -> int:
    try:
        return os.dup(2)
    except OSError:
        return os.open(os.devnull, os.O_WRONLY)


def _restore(fd: int, private: int) -> None:
    os.set_blocking(private, True)
    os.dup2(private, fd)
    os.close(private)


@asynccontextmanager
async def _pipes() -> AsyncIterator[Streams]:
    read_fd = _claim(0, os.open(os.devnull, os.O_RDONLY))
    try:
        write_fd = _claim(1, _stderr_or_null())
    except BaseException:
        _restore(0, read_fd)
        raise
    inbound, read = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    write, outbound = anyio.create_memory_object_stream[SessionMessage](0)
    reading = anyio.CancelScope()
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_read_lines, read_fd, inbound, reading)
            tg.start_soon(_write_lines, write_fd, outbound)
            try:
                yield read, write
            finally:
                reading.cancel()  # the server is done: stop reading, send what is left
                write.close()
    finally:
        _restore(0, read_fd)
        _restore(1, write_fd)


async def _read_lines(
    fd: int,
    inbound: MemoryObjectSendStream[SessionMessage | Exception],
    scope: anyio.CancelScope,
) -> None:
    with scope:
        async with inbound:
            buffer = bytearray()
            scanned = 0  # no newline in buffer[:scanned]
            skipping = False  # dropping the rest of a line over MAX_LINE
            while True:
                await anyio.wait_readable(fd)
                try:
                    chunk = os.read(fd, CHUNK)
                except BlockingIOError:
                    continue
                if not chunk:
                    break
                buffer += chunk
                while (end := buffer.find(b"\n", scanned)) >= 0:
                    line = bytes(buffer[: end + 1])
                    del buffer[: end + 1]
                    scanned = 0
                    if skipping:
                        skipping = False
                        continue
                    await inbound.send(_parse(line))
                scanned = len(buffer)
                if len(buffer) > MAX_LINE:
                    if not skipping:
                        await inbound.send(LineTooLong(f"a line over {MAX_LINE} bytes"))
                    skipping = True
                    buffer.clear()
                    scanned = 0
            if buffer.strip() and not skipping:  # a last line without its newline
                await inbound.send(_parse(bytes(buffer)))


def _parse(line: bytes) -> SessionMessage | Exception:
    """As the SDK's transport: the message, or the exception that says why it is not one."""
    try:
        text = line.decode("utf-8", errors="replace")
        return SessionMessage(types.jsonrpc_message_adapter.validate_json(text, by_name=False))
    except Exception as exc:
        return exc


async def _write_lines(fd: int, outbound: MemoryObjectReceiveStream[SessionMessage]) -> None:
    async with outbound:
        async for item in outbound:
            text = item.message.model_dump_json(by_alias=True, exclude_unset=True)
            data = memoryview((text + "\n").encode("utf-8"))
            while data:
                try:
                    data = data[os.write(fd, data) :]
                except BlockingIOError:
                    await anyio.wait_writable(fd)
