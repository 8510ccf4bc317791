"""The webhook degrades instead of dying: over-large bodies get 413, slow bodies 408 at the read deadline,
a full server an immediate 429, malformed or pathologically nested reviews a 400 review (never a 500); TLS 1.2
CBC suites are refused; the key file is 0600 and the certificate Secret holds no CA key. Real sockets, real TLS."""

from __future__ import annotations

import asyncio
import ssl
import stat
import time
from collections.abc import AsyncIterator
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
