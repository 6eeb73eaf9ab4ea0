"""Incremental reader for one big JSON document: a list of records or an object keyed by record id.

Official GQA question files are a single JSON object of up to ~1.4 GB; `json.load` would hold all of it (several
times over as Python objects). This scanner decodes one record at a time with `json.JSONDecoder.raw_decode` over a
sliding text buffer, so memory stays at one chunk plus one record.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_WS = re.compile(r"\s*")
_UNDECODABLE = re.compile("[\udc80-\udcff]")  # bytes that are not UTF-8, as `surrogateescape` reads them


class JSONStreamError(ValueError):
    """Malformed JSON in a streamed document; the message names the file, the record and the character offset."""


class _Scanner:
    def __init__(self, path: Path, chunk_size: int) -> None:
        self.path = path
        # bytes that are not UTF-8 become lone surrogates: the reader names the record holding them
        self.file = open(path, encoding="utf-8", errors="surrogateescape")  # noqa: SIM115 - closed below
        self.chunk_size = chunk_size
        self.buf = ""
        self.pos = 0
        self.consumed = 0  # characters dropped from the front of `buf`
        self.eof = False
        self.undecodable = (
            False  # a byte that is not UTF-8 was read (cheap to track; records are checked after)
        )
        self.decoder = json.JSONDecoder()

    def fill(self) -> None:
        chunk = self.file.read(self.chunk_size)
        if not chunk:
            self.eof = True
        elif not self.undecodable and _UNDECODABLE.search(chunk):
            self.undecodable = True
        self.consumed += self.pos
        self.buf = self.buf[self.pos :] + chunk
        self.pos = 0

    def peek(self) -> str:
        """Next non-whitespace character ('' at end of file), not consumed."""
        while True:
            self.pos = _WS.match(self.buf, self.pos).end()
            if self.pos < len(self.buf) or self.eof:
                return self.buf[self.pos : self.pos + 1]
            self.fill()

    def expect(self, chars: str, where: str) -> str:
        c = self.peek()
        if not c or c not in chars:
            found = repr(c) if c else "end of file"
            self.fail(f"expected one of {' '.join(repr(x) for x in chars)} {where}, found {found}")
        self.pos += 1
        return c

    def value(self, where: str) -> Any:
        self.peek()
        while True:
            try:
                obj, end = self.decoder.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as e:
                if self.eof:
                    self.fail(f"{e.msg} {where}", offset=e.pos)
                self.fill()
                continue
            if end == len(self.buf) and not self.eof:  # a number could continue in the next chunk
                self.fill()
                continue
            self.pos = end
            return obj

    def end_of_document(self) -> None:
        """Only whitespace may follow the closing bracket: a second list (two files concatenated) or trailing
        garbage would otherwise be dropped without a word."""
        c = self.peek()
        if c:
            self.fail(
                f"unexpected {c!r} after the end of the document (a second JSON value, e.g. two files "
                "concatenated, or trailing data); the records after it would be lost"
            )

    def fail(self, msg: str, offset: int | None = None) -> None:
        at = self.consumed + (self.pos if offset is None else offset)
        raise JSONStreamError(f"{self.path}: malformed JSON at character {at}: {msg}")


def iter_json_items(
    path: str | Path, chunk_size: int = 1 << 20, seen: dict[str, bool] | None = None
) -> Iterator[tuple[int | str, Any]]:
    """Yield ``(index, record)`` from a top-level JSON list, or ``(key, record)`` from a top-level JSON object.

    Bytes that are not UTF-8 are read as lone surrogates (``errors="surrogateescape"``); once one has been read,
    ``seen["undecodable"]`` is True when a record is yielded, so the caller checks records only from then on."""
    sc = _Scanner(Path(path), chunk_size)
    seen = {} if seen is None else seen
    try:
        opener = sc.expect("[{", "at the start of the document (a list or an object of records)")
        closer = "]" if opener == "[" else "}"
        if sc.peek() == closer:
            sc.pos += 1
            sc.end_of_document()
            return
        index = 0
        while True:
            where = f"in record {index}"
            if opener == "[":
                key: int | str = index
            else:
                key = sc.value(f"in the key of record {index}")
                if not isinstance(key, str):
                    sc.fail(f"expected a string key for record {index}")
                sc.expect(":", f"after key {key!r}")
                where = f"in record {key!r}"
            value = sc.value(where)
            seen["undecodable"] = sc.undecodable
            yield key, value
            index += 1
            if sc.expect("," + closer, f"after record {key!r}") == closer:
                sc.end_of_document()
                return
    finally:
        sc.file.close()
