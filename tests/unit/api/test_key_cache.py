"""The API's key cache: trusted only while revocations can be heard, emptied by one, and never refilled by a read
that began before it."""

from __future__ import annotations

import pytest

import api.key_cache
from api.key_cache import Caller, KeyCache


def test_a_revocation_empties_the_cache_and_a_read_begun_before_it_is_not_kept() -> None:
    cache = KeyCache(trusted=lambda: True)
    cache.put("a", Caller("key-a", None), cache.generation())
    before = cache.generation()  # a request starts reading key b from the database…
    cache.clear()  # …a revocation is announced meanwhile…
    cache.put("b", Caller("key-b", None), before)  # …and its read, perhaps of the revoked key, is not cached
    assert cache.get("a") is None and cache.get("b") is None
    cache.put("b", Caller("key-b", None), cache.generation())
    assert cache.get("b") == Caller("key-b", None)


def test_while_revocations_cannot_be_heard_the_cache_is_neither_read_nor_filled() -> None:
    hearing = [True]
    cache = KeyCache(trusted=lambda: hearing[0])
    cache.put("a", Caller("key-a", None), cache.generation())
    hearing[0] = False
    assert cache.get("a") is None
    cache.put("b", Caller("key-b", None), cache.generation())
    hearing[0] = True
    assert cache.get("a") == Caller("key-a", None) and cache.get("b") is None


def test_an_entry_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    cache = KeyCache(trusted=lambda: True)
    monkeypatch.setattr(api.key_cache, "ENTRY_TTL_S", -1.0)  # already past its time when stored
    cache.put("a", Caller("key-a", None), cache.generation())
    assert cache.get("a") is None
