"""Token ids as the API hands them to the worker, through the job row."""

from __future__ import annotations

import pytest

from contract.tokens import FINGERPRINT_BYTES, pack_token_ids, unpack_token_ids

PRINT = bytes(range(FINGERPRINT_BYTES))


@pytest.mark.parametrize(("ids", "width"), [([[101, 5, 103, 102]], 2), ([[0], [2**32 - 1, 7], []], 4),
                                           ([[101, 102]] * 64, 2), ([[2**16 - 1], [2**16]], 4), ([], 2)])
def test_packed_ids_unpack_to_themselves(ids: list[list[int]], width: int) -> None:
    packed = pack_token_ids(PRINT, ids)
    assert packed[:FINGERPRINT_BYTES] == PRINT and packed[FINGERPRINT_BYTES] == width
    assert len(packed) == FINGERPRINT_BYTES + 1 + width * (1 + len(ids) + sum(map(len, ids)))
    assert unpack_token_ids(packed, PRINT, len(ids)) == ids
    assert unpack_token_ids(memoryview(packed), PRINT, len(ids)) == ids  # as a driver may return a blob


def test_ids_of_another_tokenizer_or_another_job_shape_are_refused() -> None:
    packed = pack_token_ids(PRINT, [[1, 2, 3], [4]])
    assert unpack_token_ids(packed, bytes(FINGERPRINT_BYTES), 2) is None
    assert unpack_token_ids(packed, PRINT, 3) is None
    assert unpack_token_ids(packed, PRINT, 1) is None
    assert unpack_token_ids(packed[:-1], PRINT, 2) is None
    assert unpack_token_ids(packed[:-4], PRINT, 2) is None
    assert unpack_token_ids(packed[:FINGERPRINT_BYTES], PRINT, 2) is None
    assert unpack_token_ids(PRINT + b"\x03" + packed[FINGERPRINT_BYTES + 1:], PRINT, 2) is None  # no such width
    assert unpack_token_ids(None, PRINT, 2) is None
