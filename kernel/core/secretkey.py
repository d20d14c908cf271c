"""Start-up check of the configured secret key (``secretKey``, for signed sessions).

No secret configured: the kernel generates one into ``VAR`` (mode 0600) and
keeps it (:func:`generated_secret`). A secret that *is*
configured, in ``config.py``, in ``KERNKOA_SECRETKEY`` or as an override, is
refused at start-up outside debug mode when it is empty (an empty
``KERNKOA_SECRETKEY=""`` is a mistake, not a request for a generated one) or
one of the well-known values that tutorials and the original KernKoa shipped
(``development key``...): anyone could forge a session cookie with it.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import typing as t
from pathlib import Path

from .errors import InsecureSecretError
from .files import write_private
from .settings import ENV_PREFIX
from .settings import Settings

log = logging.getLogger("kernkoa")

#: Well-known secrets, compared after lower-casing and dropping everything but
#: letters and digits ("Development-Key" is "developmentkey").
KNOWN_SECRETS = frozenset({
    "developmentkey", "devkey", "dev", "development", "secret", "secretkey", "mysecret",
    "mysecretkey", "supersecret", "supersecretkey", "topsecret", "changeme", "changethis",
    "changeit", "changemeplease", "default", "defaultkey", "password", "passw0rd", "test",
    "testing", "testkey", "key", "flask", "flasksecret", "kernkoa", "yoursecretkey",
    "yoursecret", "insecure", "notsecret", "s3cr3t", "xxx", "abc123", "123456", "12345678",
    "letmein", "none", "null", "todo", "example", "sessionkey", "appsecret",
})

_NOT_ALNUM = re.compile(r"[^a-z0-9]")

#: Name of the generated secret's file in the VAR folder.
SECRET_FILE = "secret_key"


def generated_secret(var: Path) -> str:
    """The secret kept in ``var``, created (mode 0600) when there is none yet."""
    path = var / SECRET_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    # Never put over an existing file: every process racing to create it then
    # reads the one secret that won.
    write_private(path, secrets.token_hex(32), replace=False)
    return path.read_text().strip()


def is_known_secret(value: str) -> bool:
    """Whether ``value`` is one of :data:`KNOWN_SECRETS` (or empty once normalized)."""
    normalized = _NOT_ALNUM.sub("", value.lower())
    return not normalized or normalized in KNOWN_SECRETS


def _explicitly_empty(overrides: t.Mapping[str, t.Any] | None,
                      environ: t.Mapping[str, str]) -> bool:
    for key, value in (overrides or {}).items():
        if key.lower() == "secretkey" and not str(value or "").strip():
            return True
    for key, value in environ.items():
        if key.upper() == f"{ENV_PREFIX}SECRETKEY" and not value.strip():
            return True
    return False


def check_secret(settings: Settings, overrides: t.Mapping[str, t.Any] | None = None,
                 environ: t.Mapping[str, str] | None = None) -> None:
    """Refuse an explicitly empty or well-known ``secretKey`` outside debug mode.

    :raises InsecureSecretError: with a message saying what to do.
    """
    environ = os.environ if environ is None else environ
    value = settings.secretKey
    if value.strip():
        problem = "is a well-known value" if is_known_secret(value) else None
    else:
        problem = "is set but empty" if _explicitly_empty(overrides, environ) else None
    if problem is None:
        return
    message = (f"the configured secret key (secretKey / {ENV_PREFIX}SECRETKEY) {problem}: "
               "anyone could forge session cookies. Set a long random one, e.g. "
               f"{ENV_PREFIX}SECRETKEY=$(python3 -c 'import secrets; "
               "print(secrets.token_hex(32))'), or leave it unset to have one generated "
               "into VAR")
    if settings.DEBUG:
        log.warning("%s (allowed in debug mode only)", message)
        return
    raise InsecureSecretError(message)
