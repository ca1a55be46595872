"""The API key format: `llmapi_` + 30 base62 characters (~178 random bits) + a 6-character
base62 CRC32 of everything before it. The fixed prefix lets secret scanners find leaked keys;
the checksum lets us (and them) reject a mistyped or made-up key without a database lookup.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
import zlib

from django.conf import settings

PREFIX = "llmapi_"
ALPHABET = string.digits + string.ascii_uppercase + string.ascii_lowercase
RANDOM_LENGTH = 30
CHECKSUM_LENGTH = 6
KEY_LENGTH = len(PREFIX) + RANDOM_LENGTH + CHECKSUM_LENGTH
# What the dashboard shows before the ellipsis: the fixed prefix and four random characters.
DISPLAY_PREFIX_LENGTH = len(PREFIX) + 4

_KEY_RE = re.compile(rf"^{PREFIX}[0-9A-Za-z]{{{RANDOM_LENGTH + CHECKSUM_LENGTH}}}$")


def _base62(number: int, width: int) -> str:
    digits = []
    while number:
        number, rem = divmod(number, 62)
        digits.append(ALPHABET[rem])
    return "".join(reversed(digits)).rjust(width, ALPHABET[0])


def checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode("ascii")), CHECKSUM_LENGTH)


def generate() -> str:
    body = PREFIX + "".join(secrets.choice(ALPHABET) for _ in range(RANDOM_LENGTH))
    return body + checksum(body)


def is_well_formed(raw: str) -> bool:
    """Shape and checksum only: costs no query, so junk never reaches the database."""
    if len(raw) != KEY_LENGTH or not _KEY_RE.match(raw):
        return False
    return hmac.compare_digest(checksum(raw[:-CHECKSUM_LENGTH]), raw[-CHECKSUM_LENGTH:])


def hash_key(raw: str) -> str:
    pepper = settings.API_KEY_PEPPER
    if not pepper:
        raise RuntimeError("LLMAPI_API_KEY_PEPPER is not set.")
    return hmac.new(pepper.encode(), raw.encode("ascii"), hashlib.sha256).hexdigest()


def display_prefix(raw: str) -> str:
    return raw[:DISPLAY_PREFIX_LENGTH]


def last4(raw: str) -> str:
    return raw[-4:]
