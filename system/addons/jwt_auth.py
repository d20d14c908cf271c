"""Add-on ``jwt_auth``: ``Authorization: Bearer <token>``, HS256 with a shared key.

Enable it with ``KERNKOA_ADDONS=jwt_auth``. Settings (``config.py``):

- ``HMACKEY`` (``KERNKOA_HMACKEY``): the shared key itself; or else
- ``HMACKEY_FILE``: a file holding it (default ``hmackey`` at the project
  root, as knowage-python reads it); surrounding whitespace is ignored.
- ``JWT_AUDIENCE``: when set, tokens must carry that ``aud``.
- ``JWT_LEEWAY``: seconds of clock skew tolerated.

Tokens are checked with PyJWT, HS256 only: ``none``, RS*/ES* and every other
algorithm is refused, whatever the token's header says, so a public key can
never be mistaken for the HMAC secret. ``exp`` is required. Scopes come from a
``scope`` claim (space-separated, OAuth 2 style) or a ``scopes`` list; the
user name from ``sub``.

Start-up fails with a clear message, and never prompts, when the key is
missing, shorter than 32 bytes (RFC 7518 §3.2), well known or trivial, or a PEM/SSH
key.
Make a key with ``python3 -c 'import secrets; print(secrets.token_hex(32))' > hmackey``
and a token with ``jwt.encode({"sub": "me", "scope": "a b", "exp": ...}, key, "HS256")``.
"""

from __future__ import annotations

import re
import typing as t
from dataclasses import dataclass
from pathlib import Path

import jwt
from flask import Flask
from flask import Request
from flask import current_app

from kernel.auth.layer import Identity
from kernel.core.errors import AuthConfigError
from kernel.core.errors import InvalidCredentials
from kernel.core.secretkey import is_known_secret
from kernel.core.settings import Settings

#: The ``Authorization`` scheme this add-on answers.
SCHEME = "Bearer"

#: The only algorithm accepted.
ALGORITHMS = ["HS256"]

#: Shortest accepted key, in bytes (the size of the SHA-256 output).
MIN_KEY_BYTES = 32

#: Fewest different characters in an accepted key (a hex key has up to 16).
MIN_DISTINCT_CHARACTERS = 8

#: Longest token looked at; anything longer is refused unparsed.
MAX_TOKEN_LENGTH = 8192

_EXTENSION = "kernkoa.jwt_auth"
_UNQUOTABLE = re.compile(r'["\\\x00-\x1f\x7f]')


@dataclass(frozen=True)
class JwtSettings:
    """The checked settings of one app."""

    key: bytes
    audience: str | None
    leeway: float
    realm: str


def _read_key(settings: Settings) -> tuple[str, str]:
    """The key and where it came from."""
    if settings.HMACKEY.strip():
        return settings.HMACKEY.strip(), "KERNKOA_HMACKEY"
    path = Path(settings.path) / settings.HMACKEY_FILE
    try:
        return path.read_text(encoding="utf-8").strip(), str(path)
    except FileNotFoundError:
        raise AuthConfigError(
            f"jwt_auth is enabled but has no key: write one into {path} (HMACKEY_FILE), "
            "e.g. python3 -c 'import secrets; print(secrets.token_hex(32))' > "
            f"{path}, or set KERNKOA_HMACKEY") from None
    except (OSError, UnicodeDecodeError) as error:
        raise AuthConfigError(f"jwt_auth cannot read its key file {path}: {error}") from None


def init_app(app: Flask, settings: Settings) -> None:
    """Read and check the key and settings; refuse to start on anything unsafe."""
    key, source = _read_key(settings)
    if not key:
        raise AuthConfigError(f"jwt_auth: the key in {source} is empty")
    if key.startswith(("-----BEGIN", "ssh-")):
        raise AuthConfigError(f"jwt_auth: the key in {source} is a public/private key; "
                              "HS256 needs a shared random secret")
    if len(key.encode()) < MIN_KEY_BYTES:
        raise AuthConfigError(f"jwt_auth: the key in {source} is shorter than "
                              f"{MIN_KEY_BYTES} bytes")
    if is_known_secret(key) or len(set(key)) < MIN_DISTINCT_CHARACTERS:
        # A placeholder ("changeme" * 4, "x" * 32...) is as good as no key.
        raise AuthConfigError(f"jwt_auth: the key in {source} is a well-known or trivial "
                              "value; use a random one")
    app.extensions[_EXTENSION] = JwtSettings(
        key=key.encode(),
        audience=settings.JWT_AUDIENCE or None,
        leeway=settings.JWT_LEEWAY,
        realm=_UNQUOTABLE.sub("", settings.AUTH_REALM),
    )


def _settings() -> JwtSettings:
    return t.cast(JwtSettings, current_app.extensions[_EXTENSION])


def scopes_of(claims: t.Mapping[str, t.Any]) -> frozenset[str]:
    """The scopes a token grants: its ``scope`` string and ``scopes`` list together."""
    found: set[str] = set()
    scope = claims.get("scope")
    if isinstance(scope, str):
        found.update(scope.split())
    listed = claims.get("scopes")
    if isinstance(listed, list):
        found.update(s for s in listed if isinstance(s, str) and s and not s.isspace())
    return frozenset(found)


def authenticate(request: Request) -> Identity:
    """The identity the request's Bearer token proves.

    :raises InvalidCredentials: for a malformed, forged, expired or
        otherwise unacceptable token.
    """
    config = _settings()
    parts = request.headers.get("Authorization", "").split(None, 1)
    token = parts[1].strip() if len(parts) == 2 else ""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise InvalidCredentials("The bearer token is missing or malformed.")
    require = ["exp", "aud"] if config.audience else ["exp"]
    try:
        claims = jwt.decode(
            token, config.key, algorithms=ALGORITHMS, audience=config.audience,
            leeway=config.leeway,
            options={"require": require, "verify_aud": config.audience is not None},
        )
    except jwt.ExpiredSignatureError:
        raise InvalidCredentials("The bearer token has expired.") from None
    except jwt.PyJWTError as error:
        raise InvalidCredentials("The bearer token is not valid.", detail=str(error)) from None
    subject = claims.get("sub")
    return Identity(name=subject if isinstance(subject, str) else "", scopes=scopes_of(claims),
                    scheme=SCHEME, claims=claims)


def challenge(error: str | None = None, scopes: t.Sequence[str] = ()) -> str:
    """The ``WWW-Authenticate`` value (RFC 6750), with an error code when there is one."""
    value = f'Bearer realm="{_settings().realm}"'
    if error:
        value += f', error="{error}"'
    if scopes:
        value += f', scope="{" ".join(scopes)}"'
    return value
