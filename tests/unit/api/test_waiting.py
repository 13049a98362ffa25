"""An API process's count of the requests each key holds waiting (`api.waiting.WaitSlots`)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from api.waiting import WaitSlots


def test_a_key_holds_at_most_its_share_and_other_keys_are_not_held_up() -> None:
    slots = WaitSlots(per_key=2)
    with slots.slot("a") as one, slots.slot("a") as two, slots.slot("a") as three, slots.slot("b") as other:
        assert (one, two, three, other) == (True, True, False, True)
        assert (slots.held("a"), slots.held("b")) == (2, 1)  # the refused one took nothing
    assert (slots.held("a"), slots.held("b")) == (0, 0)
    with slots.slot("a") as again:
        assert again


def test_a_slot_is_given_back_when_its_request_fails() -> None:
    slots = WaitSlots(per_key=1)
    with pytest.raises(RuntimeError), slots.slot("a") as granted:
        assert granted
        raise RuntimeError("the request failed while it waited")
    assert slots.held("a") == 0


def test_no_wait_at_all_when_the_share_is_zero() -> None:
    slots = WaitSlots(per_key=0)
    with slots.slot("a") as granted:
        assert not granted
    assert slots.held("a") == 0


def test_threads_taking_slots_at_once_never_hold_more_than_the_share() -> None:
    slots, share, threads = WaitSlots(per_key=3), 3, 24
    inside = 0
    most = 0
    count = threading.Lock()
    start = threading.Barrier(threads)

    def request() -> bool:
        nonlocal inside, most
        start.wait()
        with slots.slot("a") as granted:
            if granted:
                with count:
                    inside += 1
                    most = max(most, inside)
                with count:
                    inside -= 1
            return granted

    with ThreadPoolExecutor(threads) as pool:
        granted = list(pool.map(lambda _: request(), range(threads)))
    assert 1 <= most <= share
    assert sum(granted) >= share  # the first to come each found room
    assert slots.held("a") == 0
