"""CSV bulk import of holders and their credentials, as pure parsing: text in, valid rows and
per-row errors out. Nothing is applied here; the caller turns ``ImportResult.items()`` into a
delta or store write. Rows with errors are left out whole, so they change nothing.

The file: UTF-8 text (a leading BOM is ignored), comma-separated, double quotes for fields that
contain commas or quotes, a header row first. Columns may come in any order; ``holder_id``,
``name`` and ``kind`` are required, the rest optional; unknown or repeated columns reject the file.

=============  ====================================================================================
column         meaning
=============  ====================================================================================
holder_id      required; 1-64 of ``A-Z a-z 0-9 . _ : -``, starting with a letter or digit; unique in
               the file. An id already on the site updates that holder (the import never deletes).
name           required; up to 128 characters (any script), no control characters
kind           required; ``resident``, ``staff`` or ``visitor``
apartment      required for residents; up to 32 characters
card_format    ``h10301`` (26-bit), ``h10306`` (34-bit), ``c1000_35``, ``c1000_48`` or ``raw``;
               required with ``card``
facility       decimal facility / company code within the format's range (``raw``: 0 or empty)
card           decimal card number within the format's range; unique in the file and on the site
               (the same holder's own card, re-imported, is not a duplicate)
pin            4-8 digits. With a card: that card's PIN (a card+PIN credential). Without a card: a
               PIN-only credential, whose PIN must be unique on the site. Never echoed in errors.
access_levels  access level ids separated by ``;``; each must exist on the site
valid_from     ``2026-01-31`` (start of that local day), ``2026-01-31T08:00`` (site-local; refused
               when DST makes it nonexistent or ambiguous — add an offset), or with an offset
               ``2026-01-31T08:00+08:00`` / ``…Z``
valid_until    same forms; a date alone means through the end of that local day; visitors need it
extended_unlock  ``yes``/``no`` (or ``true``/``false``, ``1``/``0``; empty: no): the holder needs
               more time at doors (accessibility), so grants use the door's extended unlock time
=============  ====================================================================================

A row makes one holder and at most one credential, with deterministic ids: ``<holder_id>.card``
for a card (with or without PIN), ``<holder_id>.pin`` for a PIN alone, so re-importing a file is
idempotent and a holder's new card replaces the old one.

Errors read ``line N: column: message`` (N is the file line where the row starts, the header being
line 1); errors about the whole file read ``input: message`` and reject every row. Limits:
``max_bytes`` of UTF-8 and ``max_rows`` data rows per file; fields longer than 256 characters.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TypeVar
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from rules.access.index import AccessIndex
from rules.access.model import (
    ID_PATTERN,
    AccessItems,
    Card,
    CardFormat,
    CardKey,
    Credential,
    CredentialKind,
    Holder,
    HolderKind,
    check_card_range,
)
from rules.access.pin import check_pin_format
from rules.access.schedule import AmbiguousLocalTime, NonexistentLocalTime, resolve_local, start_of_local_day

COLUMNS = (
    "holder_id",
    "name",
    "kind",
    "apartment",
    "card_format",
    "facility",
    "card",
    "pin",
    "access_levels",
    "valid_from",
    "valid_until",
    "extended_unlock",
)
REQUIRED_COLUMNS = ("holder_id", "name", "kind")
DEFAULT_MAX_ROWS = 10_000
DEFAULT_MAX_BYTES = 2_000_000
MAX_FIELD_CHARS = 256
MAX_HOLDER_ID_CHARS = 64
MAX_ERRORS = 500  # past this the file is clearly wrong; more lines of errors help nobody
_ID = re.compile(ID_PATTERN)
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MAX_NUMBER_DIGITS = 39  # 2**128 has 39 digits: the largest raw card
_Fail = Callable[[str, str], None]  # (column, message)
_Model = TypeVar("_Model")


@dataclass(frozen=True, slots=True)
class RowError:
    line: int  # 0: the whole input
    column: str
    message: str

    def __str__(self) -> str:
        if self.line == 0:
            return f"input: {self.message}"
        return f"line {self.line}: {self.column}: {self.message}"


@dataclass(frozen=True, slots=True)
class ImportRow:
    line: int
    holder: Holder
    credential: Credential | None


@dataclass(frozen=True, slots=True)
class ImportResult:
    rows: tuple[ImportRow, ...] = ()
    errors: tuple[RowError, ...] = ()

    def items(self) -> AccessItems:
        """The valid rows as upserts, e.g. for ``Delta(upsert=result.items(), ...)``."""
        return AccessItems(
            holders=tuple(row.holder for row in self.rows),
            credentials=tuple(row.credential for row in self.rows if row.credential is not None),
        )


class _RowInvalid(Exception):
    def __init__(self, errors: list[RowError]) -> None:
        self.errors = errors


def parse_holders_csv(
    text: str,
    index: AccessIndex,
    *,
    max_rows: int = DEFAULT_MAX_ROWS,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> ImportResult:
    """Parse ``text`` against the site in ``index`` (its cards, PINs, access levels, time zone and
    PIN key). Never raises for bad input; everything wrong is in ``errors``."""
    # len(text) <= its UTF-8 size, so the cheap test rejects most oversized input before encoding.
    if len(text) > max_bytes:
        return _whole_file_error(f"the file is larger than {max_bytes} bytes")
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:  # lone surrogates: bytes that were not UTF-8, smuggled through a decoder
        return _whole_file_error("the file is not valid UTF-8 text")
    if size > max_bytes:
        return _whole_file_error(f"the file is larger than {max_bytes} bytes")
    text = text.removeprefix("\ufeff")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    records = _records(reader)
    _, header = next(records, (1, None))
    if header is None or isinstance(header, RowError):
        return _whole_file_error("no header row" if header is None else header.message)
    columns = [name.strip().lower() for name in header]
    header_problem = _check_header(columns)
    if header_problem:
        return _whole_file_error(header_problem)

    parser = _RowParser(index)
    rows: list[ImportRow] = []
    errors: list[RowError] = []
    data_rows = 0
    for line, record in records:
        if isinstance(record, RowError):
            errors.append(record)
        elif not any(value.strip() for value in record):
            continue  # blank line
        elif len(record) != len(columns):
            errors.append(RowError(line, "row", f"has {len(record)} fields, the header has {len(columns)}"))
        else:
            try:
                rows.append(parser.parse(line, dict(zip(columns, record, strict=True))))
            except _RowInvalid as invalid:
                errors.extend(invalid.errors)
        data_rows += 1
        if data_rows > max_rows:
            return _whole_file_error(f"more than {max_rows} rows (line {line}); split the file")
        if len(errors) >= MAX_ERRORS:
            errors.append(RowError(line, "row", f"stopped after {MAX_ERRORS} errors"))
            break
    return ImportResult(tuple(rows), tuple(errors))


def _whole_file_error(message: str) -> ImportResult:
    return ImportResult((), (RowError(0, "", message),))


def _records(reader: Iterator[list[str]]) -> Iterator[tuple[int, list[str] | RowError]]:
    """(start line, fields) per record; a record the csv module cannot parse becomes an error."""
    while True:
        start = reader.line_num + 1  # type: ignore[attr-defined]  # csv reader objects have it
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            message = f"not valid CSV: {exc}"
            if "unexpected end of data" in str(exc):
                message = "a quoted field opened here is never closed (the rest of the file was read into it)"
            yield start, RowError(start, "row", message)
            continue
        yield start, record


def _check_header(columns: list[str]) -> str | None:
    unknown = [name for name in columns if name not in COLUMNS]
    if unknown:
        return f"unknown column {unknown[0][:40]!r}; the columns are {', '.join(COLUMNS)}"
    repeated = sorted({name for name in columns if columns.count(name) > 1})
    if repeated:
        return f"column {repeated[0]!r} appears more than once"
    missing = [name for name in REQUIRED_COLUMNS if name not in columns]
    if missing:
        return f"missing required column {missing[0]!r}"
    return None


@dataclass
class _RowParser:
    """Parses rows one by one, remembering what earlier valid rows took (ids, cards, PINs)."""

    index: AccessIndex
    holders_seen: dict[str, int] = field(default_factory=dict)  # holder id -> line
    cards_seen: dict[CardKey, int] = field(default_factory=dict)
    pins_seen: dict[str, int] = field(default_factory=dict)  # PIN-only hash -> line

    @property
    def zone(self) -> ZoneInfo:
        return self.index.zone

    def parse(self, line: int, raw: dict[str, str]) -> ImportRow:
        fields = {name: value.strip() for name, value in raw.items()}
        errors: list[RowError] = []

        def fail(column: str, message: str) -> None:
            errors.append(RowError(line, column, message))

        for column, value in fields.items():
            if len(value) > MAX_FIELD_CHARS:
                fail(column, f"longer than {MAX_FIELD_CHARS} characters")
                fields[column] = ""
        holder_id = self._holder_id(fields.get("holder_id", ""), fail)
        if not fields.get("name"):
            fail("name", "required")
        kind = self._kind(fields.get("kind", ""), fail)
        card = self._card(fields, fail)
        pin = fields.get("pin", "")
        if pin:
            try:
                check_pin_format(pin)
            except ValueError as exc:
                fail("pin", str(exc))
                pin = ""
        levels = self._access_levels(fields.get("access_levels", ""), fail)
        valid_from = self._instant(fields.get("valid_from", ""), "valid_from", False, fail)
        valid_until = self._instant(fields.get("valid_until", ""), "valid_until", True, fail)
        if valid_from and valid_until and valid_from >= valid_until:
            fail("valid_until", "must be after valid_from")
        extended = self._flag(fields.get("extended_unlock", ""), "extended_unlock", fail)
        apartment = fields.get("apartment") or None
        if kind is HolderKind.RESIDENT and apartment is None:
            fail("apartment", "required for a resident")
        if kind is HolderKind.VISITOR and valid_until is None:
            fail("valid_until", "required for a visitor (visitor access is time-limited)")
        if errors or holder_id is None or kind is None:
            raise _RowInvalid(errors)

        holder = self._model(
            line,
            lambda: Holder(
                id=holder_id,
                name=fields["name"],
                kind=kind,
                apartment=apartment,
                access_levels=levels,
                valid_from=valid_from,
                valid_until=valid_until,
                extended_unlock=extended,
            ),
        )
        credential = self._credential(line, holder_id, card, pin)
        # Only a row that is accepted reserves its id, card and PIN.
        self.holders_seen[holder_id] = line
        if card is not None:
            self.cards_seen[card.key] = line
        if credential is not None and credential.kind is CredentialKind.PIN and credential.pin_hash:
            self.pins_seen[credential.pin_hash] = line
        return ImportRow(line, holder, credential)

    # --- fields ---

    def _flag(self, value: str, column: str, fail: _Fail) -> bool:
        word = value.strip().lower()
        if word in ("", "no", "false", "0"):
            return False
        if word in ("yes", "true", "1"):
            return True
        fail(column, "yes or no")
        return False

    def _holder_id(self, value: str, fail: _Fail) -> str | None:
        if not value:
            fail("holder_id", "required")
        elif len(value) > MAX_HOLDER_ID_CHARS or not _ID.match(value):
            fail("holder_id", f"1-{MAX_HOLDER_ID_CHARS} of A-Z a-z 0-9 . _ : -, starting with a letter or digit")
        elif value in self.holders_seen:
            fail("holder_id", f"already used on line {self.holders_seen[value]}")
        else:
            return value
        return None

    @staticmethod
    def _kind(value: str, fail: _Fail) -> HolderKind | None:
        try:
            return HolderKind(value.lower())
        except ValueError:
            fail("kind", f"must be one of {', '.join(k.value for k in HolderKind)}")
            return None

    def _card(self, fields: dict[str, str], fail: _Fail) -> Card | None:
        number_text, format_text = fields.get("card", ""), fields.get("card_format", "")
        facility_text = fields.get("facility", "")
        if not number_text:
            if format_text or facility_text:
                fail("card", "required when card_format or facility is given")
            return None
        try:
            card_format = CardFormat(format_text.lower())
        except ValueError:
            fail("card_format", f"must be one of {', '.join(f.value for f in CardFormat)}")
            return None
        number = _number(number_text, "card", fail)
        facility = _number(facility_text or ("0" if card_format is CardFormat.RAW else ""), "facility", fail)
        if number is None or facility is None:
            return None
        try:
            check_card_range(card_format, facility, number)
        except ValueError as exc:
            fail("facility" if str(exc).startswith("facility") else "card", str(exc))
            return None
        card = Card(format=card_format, facility=facility, number=number)
        holder_id = fields.get("holder_id", "")
        if card.key in self.cards_seen:
            fail("card", f"already used on line {self.cards_seen[card.key]}")
            return None
        existing = self.index.credential_for_card(card.key)
        if existing is not None and existing.id != f"{holder_id}.card":
            fail("card", f"already belongs to credential {existing.id!r} of holder {existing.holder_id!r}")
            return None
        return card

    def _access_levels(self, value: str, fail: _Fail) -> tuple[str, ...]:
        levels = tuple(dict.fromkeys(part.strip() for part in value.split(";") if part.strip()))
        for level in levels:
            if level not in self.index.access_levels:
                fail("access_levels", f"unknown access level {level[:80]!r}")
                return ()
        return levels

    def _instant(self, value: str, column: str, end_of_day: bool, fail: _Fail) -> datetime | None:
        if not value:
            return None
        try:
            if _DATE_ONLY.match(value):
                day = date.fromisoformat(value)
                return start_of_local_day(day + timedelta(days=1) if end_of_day else day, self.zone)
            moment = datetime.fromisoformat(value)
            if moment.tzinfo is None:
                return resolve_local(moment, self.zone)
            return moment
        except (NonexistentLocalTime, AmbiguousLocalTime) as exc:
            fail(column, f"{exc}; add a UTC offset (+HH:MM)")
        except (ValueError, OverflowError):
            fail(column, "not a date (2026-01-31), a local time (2026-01-31T08:00) or a time with an offset")
        return None

    # --- models ---

    def _credential(self, line: int, holder_id: str, card: Card | None, pin: str) -> Credential | None:
        hasher = self.index.pin_hasher
        if card is not None:
            credential_id = f"{holder_id}.card"
            pin_hash = hasher.for_card(credential_id, pin) if pin else None
            kind = CredentialKind.CARD_AND_PIN if pin else CredentialKind.CARD
            return self._model(
                line, lambda: Credential(id=credential_id, holder_id=holder_id, kind=kind, card=card, pin_hash=pin_hash)
            )
        if not pin:
            return None
        credential_id = f"{holder_id}.pin"
        pin_hash = hasher.pin_only(pin)
        owner = self.index.by_pin_hash.get(pin_hash)
        if pin_hash in self.pins_seen:
            raise _RowInvalid([RowError(line, "pin", f"the same PIN-only PIN is on line {self.pins_seen[pin_hash]}")])
        if owner is not None and owner != credential_id:
            raise _RowInvalid([RowError(line, "pin", "this PIN-only PIN is already in use; choose another")])
        return self._model(
            line, lambda: Credential(id=credential_id, holder_id=holder_id, kind=CredentialKind.PIN, pin_hash=pin_hash)
        )

    @staticmethod
    def _model(line: int, build: Callable[[], _Model]) -> _Model:
        try:
            return build()
        except ValidationError as exc:
            # Only pydantic's message and the field name: never the input (it may hold a PIN hash).
            raise _RowInvalid(
                [
                    RowError(line, _column_of(error["loc"]), error["msg"].removeprefix("Value error, "))
                    for error in exc.errors(include_input=False)
                ]
            ) from None


def _column_of(location: tuple[int | str, ...]) -> str:
    return str(location[0]) if location and location[0] in COLUMNS else "row"


def _number(text: str, column: str, fail: _Fail) -> int | None:
    if not text:
        fail(column, "required")
    elif not (text.isascii() and text.isdigit()) or len(text) > _MAX_NUMBER_DIGITS:
        fail(column, "must be a non-negative whole number")
    else:
        return int(text)
    return None
