"""The key format on its own: no database, no cache."""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import zlib

import pytest
from django.test import override_settings

from accounts import keyformat

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
KEY_RE = re.compile(r"^llmapi_[0-9A-Za-z]{36}$")


def _base62_decode(text: str) -> int:
    number = 0
    for char in text:
        number = number * 62 + BASE62.index(char)
    return number


def test_a_key_is_the_prefix_30_random_base62_characters_and_a_6_character_checksum():
    raw = keyformat.generate()
    assert raw.startswith("llmapi_")
    assert len(raw) == len("llmapi_") + 30 + 6 == 43
    assert KEY_RE.match(raw)
    assert set(raw[len("llmapi_") :]) <= set(BASE62)


def test_the_random_part_carries_at_least_160_bits():
    raw = keyformat.generate()
    random_part = raw[len("llmapi_") : -6]
    assert len(random_part) == 30
    assert len(random_part) * math.log2(len(BASE62)) >= 160


def test_generated_keys_use_the_whole_base62_alphabet():
    # 30,000 draws from 62 symbols: a generator stuck on a smaller alphabet (hex, lowercase)
    # would leave many symbols out.
    seen = set()
    for _ in range(1000):
        seen.update(keyformat.generate()[len("llmapi_") : -6])
    assert seen == set(BASE62)


def test_the_suffix_is_the_base62_crc32_of_everything_before_it():
    raw = keyformat.generate()
    body, suffix = raw[:-6], raw[-6:]
    assert _base62_decode(suffix) == zlib.crc32(body.encode("ascii"))
    assert keyformat.is_well_formed(raw)


def test_1000_generated_keys_are_unique_and_all_well_formed():
    keys = [keyformat.generate() for _ in range(1000)]
    assert len(set(keys)) == 1000
    assert all(keyformat.is_well_formed(k) for k in keys)


def test_changing_any_single_character_breaks_the_key():
    raw = keyformat.generate()
    for position, original in enumerate(raw):
        for replacement in BASE62 + "_-":
            if replacement == original:
                continue
            mutated = raw[:position] + replacement + raw[position + 1 :]
            assert not keyformat.is_well_formed(mutated), (position, replacement)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "llmapi_",
        "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789ABCD",
        "LLMAPI_" + "a" * 36,
    ],
)
def test_junk_is_not_well_formed(token):
    assert not keyformat.is_well_formed(token)


def test_whitespace_lengthening_or_shortening_breaks_the_key():
    raw = keyformat.generate()
    for token in (raw + "\n", " " + raw, raw[:-1], raw + "0", raw.upper(), raw[1:]):
        assert not keyformat.is_well_formed(token), repr(token)


def test_the_hash_is_hmac_sha256_under_the_pepper():
    raw = keyformat.generate()
    expected = hmac.new(b"test-pepper", raw.encode(), hashlib.sha256).hexdigest()
    assert keyformat.hash_key(raw) == expected
    assert len(keyformat.hash_key(raw)) == 64


def test_a_different_pepper_gives_a_different_hash():
    raw = keyformat.generate()
    with override_settings(API_KEY_PEPPER="another-pepper"):
        other = keyformat.hash_key(raw)
    assert other != keyformat.hash_key(raw)
    assert other == hmac.new(b"another-pepper", raw.encode(), hashlib.sha256).hexdigest()


def test_hashing_without_a_pepper_fails_loudly():
    with override_settings(API_KEY_PEPPER=""), pytest.raises(RuntimeError, match="PEPPER"):
        keyformat.hash_key(keyformat.generate())


def test_the_display_parts_are_the_prefix_plus_four_and_the_last_four():
    raw = keyformat.generate()
    assert keyformat.display_prefix(raw) == raw[:11]
    assert keyformat.display_prefix(raw).startswith("llmapi_")
    assert keyformat.last4(raw) == raw[-4:]
