"""What a tenant may read about a cloud failure.

The node provisioner writes Azure's full error text on the cluster-scoped NodeClaim/Machine, where only
cluster operators read it: it carries client, object and subscription ids. A Workspace (namespaced, readable
by its team) and its Events get the step that failed, the reason and Azure's error code, and where to look.
"""

from __future__ import annotations

import re

# The provisioner's failure messages: "<step> failed: <AzureCode>: <Azure's text>" (code optional).
_CLOUD_FAILURE = re.compile(
    r"(?P<step>.*?) failed: (?:(?P<code>[A-Za-z][A-Za-z0-9_.]{0,80}): )?.*", re.DOTALL
)
MAX_MESSAGE = 300


def tenant_message(kind: str, name: str, reason: str, message: str) -> str:
    """The claim's blocking message as a Workspace may show it."""
    match = _CLOUD_FAILURE.fullmatch(message)
    if match is None:
        return f"{kind} {name}: {message[:MAX_MESSAGE]}"
    code = match.group("code")
    detail = f"{reason}, Azure error code {code}" if code else reason
    return (
        f"{kind} {name}: {match.group('step')[:120]} failed ({detail}); the full message is on the "
        f"cluster-scoped {kind}: kubectl describe {kind.lower()} {name}"
    )
