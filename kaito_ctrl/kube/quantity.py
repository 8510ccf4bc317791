"""Kubernetes resource quantities ("100Gi", "1.5", "500m", "2e3") as numbers."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
            "k": Decimal(10**3), "M": Decimal(10**6), "G": Decimal(10**9), "T": Decimal(10**12),
            "P": Decimal(10**15), "E": Decimal(10**18)}  # fmt: skip
_FORM = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+))(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?\d+)?$")


def parse_quantity(value: str | int | float) -> Decimal:
    """The quantity's value in base units; ValueError for anything the apiserver would reject."""
    if isinstance(value, int | float):
        return Decimal(str(value))
    text = str(value).strip()
    match = _FORM.fullmatch(text)
    if not match:
        raise ValueError(f"{value!r} is not a Kubernetes quantity (e.g. 100Gi, 500m, 2)")
    number, suffix = match.group(1), match.group(2) or ""
    try:
        amount = Decimal(number)
        if suffix in _BINARY:
            return amount * _BINARY[suffix]
        if suffix[:1] in ("e", "E"):
            return amount * (Decimal(10) ** int(suffix[1:]))
        return amount * _DECIMAL[suffix]
    except (InvalidOperation, KeyError) as e:
        raise ValueError(f"{value!r} is not a Kubernetes quantity") from e
