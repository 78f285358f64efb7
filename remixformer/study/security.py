"""Secrets of the reader study: password hashes, one-time tokens, names.

Passwords are hashed with scrypt (``hashlib``, random salt per password; N=2**14, r=8, p=1: about
16 MiB and tens of milliseconds per check). One-time links and the admin token are random 192/256-bit
strings; only their SHA-256 is stored (a token that random cannot be guessed, so a slow hash adds
nothing). Comparisons are constant-time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
NAME_RULE = "1-64 characters: letters, digits, '_', '.', '-', starting with a letter or digit"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def check_password_rules(password: str) -> None:
    """Raise ``ValueError`` saying what is expected when ``password`` is too short or too long."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"the password is too short: at least {MIN_PASSWORD_LENGTH} characters expected")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValueError(f"the password is too long: at most {MAX_PASSWORD_LENGTH} characters expected")


def hash_password(password: str) -> str:
    """``scrypt$N$r$p$salt$hash`` of ``password`` with a fresh random salt."""
    check_password_rules(password)
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, maxmem=64 * 2**20, dklen=32
    )
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str | None) -> bool:
    """Whether ``password`` matches a hash of :func:`hash_password` (False for no hash)."""
    if not stored or len(password) > MAX_PASSWORD_LENGTH:
        return False
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        expected = _unb64(digest)
        got = hashlib.scrypt(
            password.encode("utf-8"),
            salt=_unb64(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            maxmem=64 * 2**20,
            dklen=len(expected),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


def new_token(nbytes: int = 24) -> str:
    """A random URL-safe token (24 bytes: 192 bits)."""
    return secrets.token_urlsafe(nbytes)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def same_secret(a: str | None, b: str | None) -> bool:
    """Constant-time equality of two strings; False when either is missing."""
    if not a or not b:
        return False
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def check_name(value: str, what: str) -> str:
    """``value`` stripped, or a ``ValueError`` naming ``what`` and the rule (reader names and groups
    go into CSV files and pages: no spaces, commas, quotes or leading ``=+-@``)."""
    text = str(value).strip()
    if not NAME_PATTERN.fullmatch(text):
        raise ValueError(f"{what} {value!r} is not allowed; expected {NAME_RULE}")
    return text
