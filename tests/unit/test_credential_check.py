"""The start-up credential check: one bounded token request, its outcome kept for /readyz."""

from __future__ import annotations

import asyncio

import pytest

from kaito_ctrl.controllers.provisioner.cloud.base import Reason
from kaito_ctrl.controllers.provisioner.cloud.config import AzureSettings
from kaito_ctrl.controllers.provisioner.cloud.credentials import build_credential
from kaito_ctrl.controllers.provisioner.credential_check import CredentialCheck
from kaito_ctrl.runtime.server import Checks


async def test_a_working_credential_is_asked_once_and_ready() -> None:
    calls = 0

    async def token() -> str:
        nonlocal calls
        calls += 1
        return "t"

    check = CredentialCheck(token)
    check.start()
    assert await check.ready() and await check.ready()
    assert calls == 1 and check.error is None


async def test_workload_identity_without_its_token_file_fails_readiness(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What a pod without the azure.workload.identity/use label gets: no federated token file injected."""
    for name in ("AZURE_FEDERATED_TOKEN_FILE", "AZURE_CLIENT_ID", "AZURE_TENANT_ID"):
        monkeypatch.delenv(name, raising=False)
    settings = AzureSettings("s", "rg", "c", "l", credential="workload", client_id="id", tenant_id="t")
    try:
        credential = build_credential(settings)
    except ValueError as e:  # azure-identity may refuse at construction: the same finding, earlier
        assert "token" in str(e).lower() or "file" in str(e).lower()
        return
    try:
        check = CredentialCheck(lambda: credential.get_token(*settings.scopes), timeout=10)
        checks = Checks()
        checks.add("azure-credential", check.ready)
        assert await checks.run() == {"azure-credential": False}
        assert check.error is not None and check.error.reason is Reason.AUTH_FAILED
    finally:
        await credential.close()


async def test_a_hanging_token_request_is_bounded() -> None:
    never = asyncio.Event()

    async def hang() -> None:
        await never.wait()

    check = CredentialCheck(hang, timeout=0.05)
    assert not await check.ready()
    assert check.error is not None and check.error.reason is Reason.TRANSIENT
    assert "no token within" in check.error.message
