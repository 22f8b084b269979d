"""Sizes as users type them: 1048576, 512K, 10M, 2G, 1T (binary multiples)."""

from __future__ import annotations

import re

from stackcore.errors import InvalidInput

_SIZE = re.compile(r"^(\d+)\s*(?:([KMGT])I?)?B?$", re.IGNORECASE)
_FACTOR = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_size(text: str, what: str = "size") -> int:
    match = _SIZE.match(str(text).strip())
    if not match:
        raise InvalidInput(f"invalid {what} {text!r}: expected bytes or a number with K, M, G "
                           "or T (e.g. 10G)")
    return int(match.group(1)) * _FACTOR[(match.group(2) or "").upper()]
