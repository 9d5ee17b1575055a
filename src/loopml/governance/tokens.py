"""API token secrets: ``lml_<token_id>_<random>``, shown once, stored only as a SHA-256.

The random part carries 32 bytes from :mod:`secrets`, so a fast hash is the right tool: nobody can
guess 256 bits, and the lookup by hash costs one index probe. The token id in the prefix lets logs
and listings name a token without revealing it.

>>> secret = new_token_secret("0123456789abcdef")
>>> secret.startswith("lml_0123456789abcdef_") and len(secret) > 60
True
>>> token_id_of(secret), token_id_of("lml_bad"), token_id_of("Bearer xyz")
('0123456789abcdef', None, None)
>>> len(hash_token(secret))
64
"""

from __future__ import annotations

import hashlib
import re
import secrets

TOKEN_PREFIX = "lml_"  # noqa: S105 - not a secret
_RANDOM_BYTES = 32
_SECRET = re.compile(r"^lml_([0-9a-f]{16})_([A-Za-z0-9_-]{43,})$")


def new_token_id() -> str:
    """16 hex characters: unique enough to name a token, not a secret."""
    return secrets.token_hex(8)


def new_token_secret(token_id: str) -> str:
    """The full secret for ``token_id``; show it once and store only :func:`hash_token`."""
    return f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(_RANDOM_BYTES)}"


def token_id_of(secret: str) -> str | None:
    """The token id in a well-formed secret, or None for anything else."""
    match = _SECRET.match(secret) if isinstance(secret, str) and len(secret) < 200 else None
    return match.group(1) if match else None


def hash_token(secret: str) -> str:
    """Hex SHA-256 of the whole secret: what the store keeps and looks tokens up by."""
    return hashlib.sha256(secret.encode()).hexdigest()
