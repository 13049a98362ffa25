"""A request's checked lines in a temporary file: an evaluation's file is read and judged once, and what each good
line's job needs is written here as it is checked, then read back to make the jobs once the whole file has passed
(a seeded sample of them, when asked) — neither held in memory whole nor read and judged a second time. (A batch's
lines need no spool: they are queued chunk by chunk as they pass, `api/batches.py`.) This process's own objects,
pickled: nothing from outside is unpickled."""

from __future__ import annotations

import pickle
import struct
import tempfile
from collections.abc import Iterator
from typing import IO, Generic, TypeVar

Item = TypeVar("Item")


class Spool(Generic[Item]):
    """Items in the order written; the file is gone when the block ends."""

    _LENGTH = struct.Struct("<I")

    def __init__(self) -> None:
        self.file: IO[bytes] = tempfile.TemporaryFile()

    def __enter__(self) -> Spool[Item]:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.file.close()

    def write(self, item: Item) -> None:
        data = pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
        self.file.write(self._LENGTH.pack(len(data)) + data)

    def read_all(self) -> Iterator[Item]:
        self.file.seek(0)
        while header := self.file.read(self._LENGTH.size):
            (length,) = self._LENGTH.unpack(header)
            item: Item = pickle.loads(self.file.read(length))
            yield item
