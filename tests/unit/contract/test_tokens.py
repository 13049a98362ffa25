"""Token ids as the API hands them to the worker, through the job row."""

from __future__ import annotations

from typing import Any

import pytest

from contract.tokens import FINGERPRINT_BYTES, pack_token_ids, unpack_token_arrays, unpack_token_ids

PRINT = bytes(range(FINGERPRINT_BYTES))


@pytest.mark.parametrize(("ids", "width"), [([[101, 5, 103, 102]], 2), ([[0], [2**32 - 1, 7], []], 4),
                                           ([[101, 102]] * 64, 2), ([[2**16 - 1], [2**16]], 4), ([], 2)])
def test_packed_ids_unpack_to_themselves(ids: list[list[int]], width: int) -> None:
    packed = pack_token_ids(PRINT, ids)
    assert packed[:FINGERPRINT_BYTES] == PRINT and packed[FINGERPRINT_BYTES] == width
    assert len(packed) == FINGERPRINT_BYTES + 1 + width * (1 + len(ids) + sum(map(len, ids)))
    assert unpack_token_ids(packed, PRINT, len(ids)) == ids
    assert unpack_token_ids(memoryview(packed), PRINT, len(ids)) == ids  # as a driver may return a blob
    arrays = unpack_token_arrays(packed, PRINT, len(ids))  # QA's: each list an array, read where it is needed
    assert arrays is not None and [one.tolist() for one in arrays] == ids


@pytest.mark.parametrize("unpack", [unpack_token_ids, unpack_token_arrays])
def test_ids_of_another_tokenizer_or_another_job_shape_are_refused(unpack: Any) -> None:
    packed = pack_token_ids(PRINT, [[1, 2, 3], [4]])
    assert unpack(packed, bytes(FINGERPRINT_BYTES), 2) is None
    assert unpack(packed, PRINT, 3) is None
    assert unpack(packed, PRINT, 1) is None
    assert unpack(packed[:-1], PRINT, 2) is None
    assert unpack(packed[:-4], PRINT, 2) is None
    assert unpack(packed[:FINGERPRINT_BYTES], PRINT, 2) is None
    assert unpack(PRINT + b"\x03" + packed[FINGERPRINT_BYTES + 1:], PRINT, 2) is None  # no such width
    assert unpack(None, PRINT, 2) is None
