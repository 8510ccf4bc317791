"""The webhook degrades instead of dying: over-large bodies get 413, slow bodies 408 at the read deadline,
a full server an immediate 429, malformed or pathologically nested reviews a 400 review (never a 500); a request
head that does not arrive within the header deadline, or a TLS handshake that does not finish, costs the client
its connection; sockets beyond max_connections are closed at once; TLS 1.2 CBC suites are refused; the key file
is 0600 and the certificate Secret holds no CA key. Real sockets, real TLS."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import stat
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from kaito_ctrl.webhook.certs import CertPolicy, generate, to_secret
from kaito_ctrl.webhook.server import MAX_BODY, VALIDATE_PATH, WebhookServer

POLICY = CertPolicy("kaito-ctrl-webhook", "kaito-system")


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[tuple[WebhookServer, ssl.SSLContext]]:
    bundle = generate(POLICY)
    srv = WebhookServer(
        "127.0.0.1", 0, cert_dir=str(tmp_path), read_timeout=0.5, max_reading=2, max_pending=2
    )
    srv.load(bundle)
    await srv.start()
    ca = tmp_path / "ca.crt"
    ca.write_bytes(bundle.ca_cert)
    client = ssl.create_default_context(cafile=str(ca))
    yield srv, client
    await srv.stop()


async def _open(srv: WebhookServer, ctx: ssl.SSLContext) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", srv.port, ssl=ctx, server_hostname="localhost")


def _head(length: int) -> bytes:
    return (
        f"POST {VALIDATE_PATH} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


@contextlib.asynccontextmanager
async def _serving(tmp_path: Path, **kwargs: Any) -> AsyncIterator[tuple[WebhookServer, ssl.SSLContext]]:
    """A server with the given limits (short deadlines keep the tests fast), and a client context trusting it."""
    bundle = generate(POLICY)
    srv = WebhookServer("127.0.0.1", 0, cert_dir=str(tmp_path), **kwargs)
    srv.load(bundle)
    await srv.start()
    try:
        yield srv, ssl.create_default_context(cadata=bundle.ca_cert.decode())
    finally:
        await srv.stop()


async def _closed_by_server(reader: asyncio.StreamReader, within: float) -> float:
    """Seconds until the server closes the connection (the client reads EOF or is reset); fails if it is still
    open after ``within`` seconds."""
    started = time.monotonic()
    try:
        data = await asyncio.wait_for(reader.read(1 << 16), within)
    except (ConnectionError, ssl.SSLError):
        data = b""
    except TimeoutError:
        pytest.fail(f"the server kept the connection open for {within}s")
    assert data == b"", f"expected the connection closed, read {data[:80]!r}"
    return time.monotonic() - started


async def _until(condition: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not condition():  # server state, no event to wait on
        if time.monotonic() > deadline:
            pytest.fail(f"not within {within}s: {what}")
        await asyncio.sleep(0.01)  # polling interval of a deadline-bounded wait


async def _response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One HTTP/1.1 response with a Content-Length, read exactly, leaving the connection usable."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    lines = head.decode().split("\r\n")
    length = next(
        int(v) for k, _, v in (line.partition(": ") for line in lines) if k.lower() == "content-length"
    )
    return int(lines[0].split()[1]), await asyncio.wait_for(reader.readexactly(length), 5)


async def _status_line(reader: asyncio.StreamReader, timeout: float = 5.0) -> int:
    line = await asyncio.wait_for(reader.readline(), timeout)
    return int(line.split()[1])


async def _post(srv: WebhookServer, ctx: ssl.SSLContext, body: bytes) -> tuple[int, bytes]:
    reader, writer = await _open(srv, ctx)
    writer.write(_head(len(body)) + body)
    await writer.drain()
    status = await _status_line(reader)
    raw = await asyncio.wait_for(reader.read(1 << 20), 5)
    writer.close()
    return status, raw.split(b"\r\n\r\n", 1)[-1]


def _review(obj: Any, old: Any = None, op: str = "CREATE") -> bytes:
    request = {"uid": "u-1", "operation": op, "object": obj, "oldObject": old}
    return orjson.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request})


async def test_oversized_body_is_refused_before_it_is_read(
    server: tuple[WebhookServer, ssl.SSLContext],
) -> None:
    srv, ctx = server
    reader, writer = await _open(srv, ctx)
    writer.write(_head(MAX_BODY + 1))  # announce 256 KiB + 1 and send nothing of it
    await writer.drain()
    assert await _status_line(reader) == 413
    writer.close()


async def test_slow_body_times_out_and_a_full_server_sheds_load(
    server: tuple[WebhookServer, ssl.SSLContext],
) -> None:
    srv, ctx = server
    slow = []
    for _ in range(2):  # max_reading=2: both reading slots held by clients that never finish their body
        reader, writer = await _open(srv, ctx)
        writer.write(_head(1000) + b"{")
        await writer.drain()
        slow.append((reader, writer))

    async def both_reading() -> None:
        while not srv._reading.locked():  # noqa: ASYNC110 - server state, no event to wait on
            await asyncio.sleep(0.01)  # polling interval of a deadline-bounded wait

    await asyncio.wait_for(both_reading(), 5)
    started = time.monotonic()
    status, _ = await _post(srv, ctx, _review({"metadata": {"name": "x"}}))
    assert status == 429 and time.monotonic() - started < 0.4, "a full server answers at once"
    assert srv.shed >= 1
    for reader, writer in slow:
        assert await _status_line(reader, timeout=3) == 408
        writer.close()
    status, body = await _post(srv, ctx, _review({"metadata": {"name": "x"}}))
    assert status == 200 and orjson.loads(body)["response"]["uid"] == "u-1", "slots are free again"


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000 + b"]" * 100_000,  # deeper than any JSON parser's limit
        b"not json",
        b'{"request": {"uid": 5}}',
    ],
)
async def test_malformed_reviews_get_a_400_review(
    server: tuple[WebhookServer, ssl.SSLContext], body: bytes
) -> None:
    srv, ctx = server
    status, out = await _post(srv, ctx, body)
    review = orjson.loads(out)
    assert status == 200 and review["response"]["allowed"] is False
    assert review["response"]["status"]["code"] == 400


async def test_deeply_nested_update_is_a_400_or_422_never_500(
    server: tuple[WebhookServer, ssl.SSLContext],
) -> None:
    srv, ctx = server
    deep = b'{"a":' * 1000 + b'"x"' + b"}" * 1000  # as deep as the JSON parser accepts
    obj = (
        b'{"apiVersion": "kaito.sh/v1beta1", "metadata": {"name": "n"}, "resource": {"labelSelector": '
        + deep
        + b"}}"
    )
    body = (
        b'{"request": {"uid": "u-1", "operation": "UPDATE", "object": '
        + obj
        + b', "oldObject": '
        + obj
        + b"}}"
    )
    status, out = await _post(srv, ctx, body)
    review = orjson.loads(out)
    assert status == 200 and review["response"]["allowed"] is False
    assert review["response"]["status"]["code"] in (400, 422)


async def test_tls12_cbc_suites_are_refused_and_aead_accepted(
    server: tuple[WebhookServer, ssl.SSLContext],
) -> None:
    srv, _ = server
    cbc = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    cbc.check_hostname, cbc.verify_mode = False, ssl.CERT_NONE
    cbc.maximum_version = ssl.TLSVersion.TLSv1_2
    cbc.set_ciphers("ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:ECDHE-ECDSA-AES128-SHA256")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        await _open(srv, cbc)
    aead = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    aead.check_hostname, aead.verify_mode = False, ssl.CERT_NONE
    aead.maximum_version = ssl.TLSVersion.TLSv1_2
    aead.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256")
    _, writer = await _open(srv, aead)
    assert writer.get_extra_info("cipher")[0] == "ECDHE-ECDSA-AES128-GCM-SHA256"
    writer.close()


async def test_key_file_is_owner_only_and_no_ca_key_is_stored(
    server: tuple[WebhookServer, ssl.SSLContext], tmp_path: Path
) -> None:
    assert stat.S_IMODE((tmp_path / "tls.key").stat().st_mode) == 0o600
    secret = to_secret(generate(POLICY), "kaito-ctrl-webhook-cert", "kaito-system")
    assert "ca.key" not in secret["data"] and all("PRIVATE" not in k for k in secret["data"])


async def test_a_stopped_server_started_again_reviews_again(
    server: tuple[WebhookServer, ssl.SSLContext],
) -> None:
    """What the supervisor does after the webhook task fails: stop, then start the same server again."""
    srv, ctx = server
    review = _review({"apiVersion": "kaito.sh/v1beta1", "kind": "Workspace", "metadata": {"name": "x"}})
    status, _ = await _post(srv, ctx, review)
    assert status == 200
    await srv.stop()
    srv.port = 0
    await srv.start()
    status, body = await _post(srv, ctx, review)
    assert status == 200 and b'"allowed"' in body


WORKSPACE = {"apiVersion": "kaito.sh/v1beta1", "kind": "Workspace", "metadata": {"name": "x"}}


async def test_a_stalled_request_head_is_cut_at_the_header_deadline(tmp_path: Path) -> None:
    """Half a request line and nothing more: the connection is closed at the header deadline (not at the 30 s
    keep-alive timeout), while a review on another connection is answered meanwhile."""
    async with _serving(tmp_path, header_timeout=1.5, keepalive_timeout=30) as (srv, ctx):
        reader, writer = await _open(srv, ctx)
        writer.write(f"POST {VALIDATE_PATH} HTTP/1.1\r\nHost: loc".encode())
        await writer.drain()
        started = time.monotonic()
        status, body = await _post(srv, ctx, _review(WORKSPACE))
        assert status == 200 and orjson.loads(body)["response"]["uid"] == "u-1"
        assert srv.header_timeouts == 0, "the review was answered while the stalled head was still pending"
        elapsed = time.monotonic() - started + await _closed_by_server(reader, within=8)
        assert 1.0 < elapsed < 5, f"closed after {elapsed:.2f}s, header deadline 1.5 s"
        assert srv.header_timeouts == 1
        writer.close()


async def test_a_connection_that_sends_nothing_is_closed(tmp_path: Path) -> None:
    async with _serving(tmp_path, header_timeout=1.0, keepalive_timeout=30) as (srv, ctx):
        reader, writer = await _open(srv, ctx)  # TLS done, then silence
        elapsed = await _closed_by_server(reader, within=8)
        assert elapsed < 4, f"closed after {elapsed:.2f}s, header deadline 1 s"
        assert srv.header_timeouts == 1
        await _until(lambda: srv.open_sockets == 0, 5, "the socket is released")
        writer.close()


async def test_a_tcp_connection_that_never_starts_tls_is_closed(tmp_path: Path) -> None:
    """No ClientHello: the TLS handshake deadline closes it (asyncio's own default would wait 60 s)."""
    async with _serving(tmp_path, handshake_timeout=1.0, header_timeout=30) as (srv, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)  # plain TCP
        await _until(lambda: srv.open_sockets == 1, 5, "the socket is accepted")
        elapsed = await _closed_by_server(reader, within=8)
        assert elapsed < 4, f"closed after {elapsed:.2f}s, handshake deadline 1 s"
        await _until(lambda: srv.open_sockets == 0, 5, "the socket is released")
        writer.close()


async def test_an_idle_keepalive_connection_is_the_keepalive_timeouts_not_the_header_deadlines(
    tmp_path: Path,
) -> None:
    """After a response the header clock waits for the next request's first byte: a keep-alive connection idle
    for longer than the header deadline (but shorter than the keep-alive timeout) still takes a second review."""
    async with _serving(tmp_path, header_timeout=1.0, keepalive_timeout=30) as (srv, ctx):
        reader, writer = await _open(srv, ctx)
        body = _review(WORKSPACE)
        writer.write(_head(len(body)) + body)
        await writer.drain()
        assert (await _response(reader))[0] == 200
        # A witness opened after the first response: once the header deadline has closed it, the keep-alive
        # connection has been idle for longer than the header deadline.
        _, silent = await _open(srv, ctx)
        await _until(
            lambda: srv.header_timeouts >= 1, 8, "the silent witness is closed at the header deadline"
        )
        assert srv.header_timeouts == 1, "only the witness was closed by the header deadline"
        writer.write(_head(len(body)) + body)
        await writer.drain()
        status, out = await _response(reader)
        assert status == 200 and orjson.loads(out)["response"]["uid"] == "u-1"
        writer.close()
        silent.close()


async def test_sockets_beyond_max_connections_are_closed_at_once(tmp_path: Path) -> None:
    """max_connections=4: four idle TLS connections are held, a fifth socket is closed before its handshake;
    once the four are closed a review is answered."""
    async with _serving(tmp_path, max_connections=4, header_timeout=30, keepalive_timeout=30) as (srv, ctx):
        idle = [await _open(srv, ctx) for _ in range(4)]
        assert srv.open_sockets == 4
        started = time.monotonic()
        with pytest.raises((ConnectionError, ssl.SSLError, asyncio.IncompleteReadError)):
            await asyncio.wait_for(_open(srv, ctx), 5)
        assert time.monotonic() - started < 2, "refused at once, not after a deadline"
        assert srv.refused_connections == 1 and srv.open_sockets == 4
        assert all(not reader.at_eof() for reader, _ in idle), "the held connections are untouched"
        for _, writer in idle:
            writer.close()
        await _until(lambda: srv.open_sockets == 0, 5, "the idle sockets are released")
        status, body = await _post(srv, ctx, _review(WORKSPACE))
        assert status == 200 and orjson.loads(body)["response"]["uid"] == "u-1"
