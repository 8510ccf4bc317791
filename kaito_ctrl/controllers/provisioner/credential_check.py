"""One bounded token request at start-up, so a broken Azure identity shows before the first Workspace.

Without the workload identity label and annotation the credential chain falls back to the node's identity (or
finds none) and every ARM call fails much later, as a launch failure. The check asks for one ARM token, logs the
outcome once, and is the ``azure-credential`` readiness check (``/readyz?verbose`` lists it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog

from kaito_ctrl.controllers.provisioner.cloud.azure_errors import classify_exception
from kaito_ctrl.controllers.provisioner.cloud.base import CloudError

log = structlog.get_logger(__name__)

READYZ_NAME = "azure-credential"


class CredentialCheck:
    def __init__(self, get_token: Callable[[], Awaitable[object]], *, timeout: float = 20.0) -> None:
        self._get_token = get_token
        self.timeout = timeout
        self.error: CloudError | None = None
        self._done: asyncio.Task[bool] | None = None

    async def _run(self) -> bool:
        try:
            async with asyncio.timeout(self.timeout):
                await self._get_token()
        except TimeoutError:
            self.error = classify_exception(TimeoutError(f"no token within {self.timeout:.0f}s"))
        except Exception as e:  # any failure of the chain is the finding, not a crash
            self.error = classify_exception(e)
        if self.error is None:
            log.info("Azure credential check passed: got an ARM token")
            return True
        # The message says which credential failed and why; it carries no token.
        log.error("Azure credential check failed", reason=self.error.reason.value, code=self.error.code,
                  error=self.error.message[:500])  # fmt: skip
        return False

    def start(self) -> asyncio.Task[bool]:
        if self._done is None:
            self._done = asyncio.ensure_future(self._run())
        return self._done

    async def ready(self) -> bool:
        """The readiness check: the one result of the start-up request (made now if not made yet)."""
        return await self.start()
