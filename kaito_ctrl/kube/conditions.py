"""metav1.Condition helpers on raw dicts (status.conditions lists).

``set_condition`` keeps ``lastTransitionTime`` when the status does not change, so writing the same
condition twice is a no-op and status is only written when it really changed.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

Condition = dict[str, Any]


def rfc3339(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(value: str) -> float:
    """``2006-01-02T15:04:05Z`` (as the apiserver writes timestamps) to epoch seconds."""
    return dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC).timestamp()


def get_condition(obj: dict[str, Any], type_: str) -> Condition | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return dict(c)
    return None


def condition_status(obj: dict[str, Any], type_: str) -> str:
    """ "True", "False" or "Unknown" (also when the condition is absent)."""
    c = get_condition(obj, type_)
    return str(c.get("status", "Unknown")) if c else "Unknown"


def is_true(obj: dict[str, Any], type_: str) -> bool:
    return condition_status(obj, type_) == "True"


def set_condition(
    conditions: list[Condition],
    type_: str,
    status: str | bool,
    reason: str,
    message: str = "",
    *,
    now: float,
    observed_generation: int | None = None,
    max_message: int = 1024,
) -> bool:
    """Set a condition in place; returns True when anything but the timestamp changed."""
    if isinstance(status, bool):
        status = "True" if status else "False"
    if len(message) > max_message:
        message = message[: max_message - 3] + "..."
    new: Condition = {"type": type_, "status": status, "reason": reason or type_, "message": message}
    if observed_generation is not None:
        new["observedGeneration"] = observed_generation
    for i, old in enumerate(conditions):
        if old.get("type") != type_:
            continue
        same_status = old.get("status") == status
        new["lastTransitionTime"] = old.get("lastTransitionTime") if same_status else rfc3339(now)
        if not new["lastTransitionTime"]:
            new["lastTransitionTime"] = rfc3339(now)
        changed = any(old.get(k) != new.get(k) for k in ("status", "reason", "message", "observedGeneration"))
        conditions[i] = new
        return changed
    new["lastTransitionTime"] = rfc3339(now)
    conditions.append(new)
    return True


def remove_condition(conditions: list[Condition], type_: str) -> bool:
    before = len(conditions)
    conditions[:] = [c for c in conditions if c.get("type") != type_]
    return len(conditions) != before
