"""Whatever a broken connection looks like on the wire, the Kubernetes client raises one TransportError (an
OSError) carrying the cause: a socket closed without a reply, a reset, a truncated body, a body that is not
JSON, nothing listening. Real sockets; no fakes of the client."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from kaito_ctrl.kube.client import KubeClient
from kaito_ctrl.kube.config import ConnectionConfig
from kaito_ctrl.kube.errors import ApiError, TransportError
from kaito_ctrl.kube.resources import LEASES

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _read_request(reader: asyncio.StreamReader) -> None:
    await reader.readuntil(b"\r\n\r\n")


async def _close_without_reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _read_request(reader)
    writer.close()


async def _reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _read_request(reader)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST on close
    writer.close()


async def _truncated(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _read_request(reader)
    writer.write(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"kind":')
    await writer.drain()
    writer.close()


async def _not_json(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _read_request(reader)
    body = b"<html>proxy error</html>"
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    await writer.drain()
    writer.close()


async def _status_404(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _read_request(reader)
    body = b'{"kind":"Status","code":404,"reason":"NotFound","message":"leases \\"x\\" not found"}'
    writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    await writer.drain()
    writer.close()


async def _serve(handler: Handler) -> AsyncIterator[str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()


@pytest.mark.parametrize(
    "handler", [_close_without_reply, _reset, _truncated, _not_json], ids=lambda h: h.__name__.strip("_")
)
async def test_every_transport_failure_is_one_transport_error(handler: Handler) -> None:
    async for url in _serve(handler):
        client = KubeClient(ConnectionConfig(server=url), timeout=5)
        try:
            with pytest.raises(TransportError) as caught:
                await client.get(LEASES, "x", "ns")
        finally:
            await client.close()
        assert isinstance(caught.value, OSError) and caught.value.retriable
        assert caught.value.__cause__ is not None and "GET" in str(caught.value)


async def test_nothing_listening_is_a_transport_error_too() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = KubeClient(ConnectionConfig(server=f"http://127.0.0.1:{port}"), timeout=5)
    try:
        with pytest.raises(TransportError):
            await client.get(LEASES, "x", "ns")
    finally:
        await client.close()


async def test_an_apiserver_answer_stays_an_api_error() -> None:
    async for url in _serve(_status_404):
        client = KubeClient(ConnectionConfig(server=url), timeout=5)
        try:
            with pytest.raises(ApiError) as caught:
                await client.get(LEASES, "x", "ns")
        finally:
            await client.close()
        assert caught.value.status == 404 and not isinstance(caught.value, TransportError)


async def test_a_connection_error_during_cancellation_stays_a_cancellation() -> None:
    """If the HTTP library surfaces a cancellation as a connection error, a retry loop that catches transport
    errors must still stop: the client re-raises the cancellation."""
    from kaito_ctrl.kube.client import _transport_error

    seen: list[BaseException] = []
    gate = asyncio.Event()

    async def loop_that_retries() -> None:
        while True:
            try:
                await gate.wait()
            except asyncio.CancelledError as cancelled:
                # What aiohttp may do: the cancel arrives as a dropped connection.
                seen.append(_transport_error("GET", "/x", ConnectionResetError("reset")))
                raise seen[-1] from cancelled
            except OSError:
                continue

    task = asyncio.create_task(loop_that_retries())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 2)
    assert isinstance(seen[0], asyncio.CancelledError)
    assert isinstance(_transport_error("GET", "/x", ConnectionResetError("reset")), TransportError)
