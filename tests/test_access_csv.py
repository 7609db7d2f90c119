"""CSV bulk import: valid rows come out as holders + credentials; every bad row gets a clear
``line N: column: message`` and is left out; hostile input never raises and never leaks a PIN."""

from __future__ import annotations

import pytest

from rules.access import (
    AccessIndex,
    AccessState,
    CredentialKind,
    Delta,
    HolderKind,
    ImportResult,
    apply_delta,
    csv_import,
    parse_holders_csv,
)
from rules.access.csv_import import COLUMNS
from tests.access_helpers import HASHER, MONDAY_10, ask, local, standard_index, utc

# The columns most files carry; tests of the optional trailing ones add them to their own header.
HEADER = "holder_id,name,kind,apartment,card_format,facility,card,pin,access_levels,valid_from,valid_until"


@pytest.fixture(scope="module")
def index() -> AccessIndex:
    return standard_index()


def parse(index: AccessIndex, *rows: str, header: str = HEADER, **limits: int) -> ImportResult:
    return parse_holders_csv("\n".join([header, *rows]) + "\n", index, **limits)


def messages(result: ImportResult) -> list[str]:
    return [str(error) for error in result.errors]


# --- good input -----------------------------------------------------------------------------------------------


def test_valid_rows_become_holders_and_credentials(index: AccessIndex) -> None:
    result = parse(
        index,
        "zoe,Zoe Zhang,resident,5-501,h10301,10,5001,,resident,2026-03-01,",
        "yan,Yan (guard),staff,,H10301,10,5002,2468,staff-all,,",
        'xin,"Xin, visitor",visitor,,,,,8642,resident,2026-03-01T09:00,2026-03-01',
        "wu,王芳,staff,,,,,,,,",
    )
    assert messages(result) == []
    rows = {row.holder.id: row for row in result.rows}
    assert rows["zoe"].holder.kind is HolderKind.RESIDENT and rows["zoe"].holder.apartment == "5-501"
    assert rows["zoe"].holder.valid_from == local(2026, 3, 1)  # a date is the start of that local day
    zoe_card = rows["zoe"].credential
    assert zoe_card is not None and zoe_card.kind is CredentialKind.CARD and zoe_card.id == "zoe.card"
    yan_card = rows["yan"].credential
    assert yan_card is not None and yan_card.kind is CredentialKind.CARD_AND_PIN
    assert yan_card.pin_hash == HASHER.for_card("yan.card", "2468")
    xin = rows["xin"]
    assert xin.holder.name == "Xin, visitor"
    assert xin.holder.valid_from == local(2026, 3, 1, 9)
    assert xin.holder.valid_until == local(2026, 3, 2)  # a date alone runs through that day
    assert xin.credential is not None and xin.credential.kind is CredentialKind.PIN
    assert rows["wu"].holder.name == "王芳" and rows["wu"].credential is None


def test_imported_rows_open_doors_once_applied(index: AccessIndex) -> None:
    result = parse(
        index,
        "zoe,Zoe,resident,5-501,h10301,10,5001,,resident,,",
        "yan,Yan,staff,,h10301,10,5002,2468,staff-all,,",
    )
    updated = apply_delta(index, Delta(base_version=index.version, version=index.version + 1, upsert=result.items()))
    assert ask(updated, AccessState(), MONDAY_10, door="side", card_number=5001).holder_id == "zoe"
    assert ask(updated, AccessState(), MONDAY_10, door="office", card_number=5002, pin="2468").granted


def test_offsets_crlf_bom_and_column_order(index: AccessIndex) -> None:
    text = (
        "\ufeffname,holder_id,kind,valid_until,valid_from\r\nOla,ola,staff,2026-04-01T00:00Z,2026-03-01T08:00+08:00\r\n"
    )
    result = parse_holders_csv(text, index)
    assert messages(result) == []
    (row,) = result.rows
    assert row.holder.valid_from == utc(2026, 3, 1, 0)
    assert row.holder.valid_until == utc(2026, 4, 1)


def test_reimporting_a_holder_with_their_own_card_is_an_update(index: AccessIndex) -> None:
    result = parse(index, "alice,Alice Wang,resident,3-201,h10301,10,1001,,resident,,", "alice2,A,staff,,,,,4711,,,")
    assert [row.holder.id for row in result.rows] == ["alice"]
    assert messages(result) == ["line 3: pin: this PIN-only PIN is already in use; choose another"]


# --- bad rows ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ("a1,A,tenant,,,,,,,,", "line 2: kind: must be one of resident, staff, visitor"),
        ("a1,A,resident,,,,,,,,", "line 2: apartment: required for a resident"),
        ("a1,A,visitor,,,,,,,,", "line 2: valid_until: required for a visitor (visitor access is time-limited)"),
        ("a1,,staff,,,,,,,,", "line 2: name: required"),
        ("bad id!,A,staff,,,,,,,,", "line 2: holder_id: 1-64 of A-Z a-z 0-9 . _ : -, starting with a letter or digit"),
        ("a1,A,staff,,h10301,10,12a,,,,", "line 2: card: must be a non-negative whole number"),
        ("a1,A,staff,,h10301,10,-5,,,,", "line 2: card: must be a non-negative whole number"),
        ("a1,A,staff,,h10301,10,70000,,,,", "line 2: card: card number 70000 is out of range 0..65535 for h10301"),
        ("a1,A,staff,,h10301,300,1,,,,", "line 2: facility: facility 300 is out of range 0..255 for h10301"),
        ("a1,A,staff,,h10301,,1,,,,", "line 2: facility: required"),
        ("a1,A,staff,,mifare,1,1,,,,", "line 2: card_format: must be one of h10301, h10306, c1000_35, c1000_48, raw"),
        ("a1,A,staff,,h10301,10,,,,,", "line 2: card: required when card_format or facility is given"),
        (
            "a1,A,staff,,h10301,10,1001,,,,",
            "line 2: card: already belongs to credential 'alice.card' of holder 'alice'",
        ),
        ("a1,A,staff,,,,,4711,,,", "line 2: pin: this PIN-only PIN is already in use; choose another"),
        ("a1,A,staff,,,,,,nosuch;staff-all,,", "line 2: access_levels: unknown access level 'nosuch'"),
        (
            "a1,A,staff,,,,,,,2026-02-30,",
            "line 2: valid_from: not a date (2026-01-31), a local time (2026-01-31T08:00) or a time with an offset",
        ),
        (
            "a1,A,staff,,,,,,,yesterday,",
            "line 2: valid_from: not a date (2026-01-31), a local time (2026-01-31T08:00) or a time with an offset",
        ),
        (
            "a1,A,staff,,,,,,,2026-03-29T02:30,",
            "line 2: valid_from: 2026-03-29T02:30:00 does not exist in Europe/Berlin (clocks skip it); "
            "add a UTC offset (+HH:MM)",
        ),
        (
            "a1,A,staff,,,,,,,,2026-10-25T02:30",
            "line 2: valid_until: 2026-10-25T02:30:00 happens twice in Europe/Berlin (clocks go back); "
            "add a UTC offset (+HH:MM)",
        ),
        ("a1,A,staff,,,,,,,2026-03-02,2026-03-01", "line 2: valid_until: must be after valid_from"),
        ("a1,A,staff,,,,,,", "line 2: row: has 9 fields, the header has 11"),
        ("a1,A\x07,staff,,,,,,,,", "line 2: name: must not contain control characters"),
        ("a1," + "N" * 129 + ",staff,,,,,,,,", "line 2: name: String should have at most 128 characters"),
        ("a1," + "N" * 300 + ",staff,,,,,,,,", "line 2: name: longer than 256 characters"),
    ],
)
def test_each_bad_row_gets_a_clear_error(index: AccessIndex, row: str, expected: str) -> None:
    result = parse(index, row, "ok1,Fine,staff,,,,,,,,")
    assert expected in messages(result)
    assert [r.holder.id for r in result.rows] == ["ok1"]  # the good row still comes through


@pytest.mark.parametrize("pin", ["12", "123456789", "12a4", "١٢٣٤"])  # too short, too long, letters, Arabic digits
def test_bad_pins_are_refused_without_being_echoed(index: AccessIndex, pin: str) -> None:
    result = parse(index, f"a1,A,staff,,h10301,10,5001,{pin},,,", f"a2,B,staff,,,,,{pin},,,")
    assert messages(result) == ["line 2: pin: a PIN is 4 to 8 digits", "line 3: pin: a PIN is 4 to 8 digits"]
    assert all(pin not in message for message in messages(result))


def test_duplicates_within_the_file_name_the_first_line(index: AccessIndex) -> None:
    result = parse(
        index,
        "a1,A,staff,,h10301,10,5001,,,,",
        "a1,A again,staff,,,,,,,,",
        "a2,B,staff,,H10301,10,5001,,,,",
        "a3,C,staff,,,,,5555,,,",
        "a4,D,staff,,,,,5555,,,",
    )
    assert messages(result) == [
        "line 3: holder_id: already used on line 2",
        "line 4: card: already used on line 2",
        "line 6: pin: the same PIN-only PIN is on line 5",
    ]
    assert [row.holder.id for row in result.rows] == ["a1", "a3"]


def test_a_rejected_row_reserves_nothing(index: AccessIndex) -> None:
    # Line 2 is bad (kind), so its card is free for line 3.
    result = parse(index, "a1,A,tenant,,h10301,10,5001,,,,", "a2,B,staff,,h10301,10,5001,,,,")
    assert messages(result) == ["line 2: kind: must be one of resident, staff, visitor"]
    assert [row.holder.id for row in result.rows] == ["a2"]


def test_a_row_can_have_several_errors(index: AccessIndex) -> None:
    result = parse(index, "a1,A,tenant,,h10301,10,x,12,nosuch,bad,")
    assert [(e.line, e.column) for e in result.errors] == [
        (2, "kind"),
        (2, "card"),
        (2, "pin"),
        (2, "access_levels"),
        (2, "valid_from"),
    ]


def test_line_numbers_count_physical_lines(index: AccessIndex) -> None:
    result = parse(index, '"a1","Multi\nline",staff,,,,,,,,', "", "a2,B,tenant,,,,,,,,")
    assert messages(result) == [
        "line 2: name: must not contain control characters",
        "line 5: kind: must be one of resident, staff, visitor",
    ]


# --- hostile files ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "input: no header row"),
        ("holder_id,name\n", "input: missing required column 'kind'"),
        ("holder_id,name,kind,password\n", "input: unknown column 'password'; the columns are " + ", ".join(COLUMNS)),
        ("holder_id,name,kind,name\n", "input: column 'name' appears more than once"),
    ],
)
def test_bad_headers_reject_the_file(index: AccessIndex, text: str, expected: str) -> None:
    assert messages(parse_holders_csv(text, index)) == [expected]


def test_oversized_input_is_refused_whole(index: AccessIndex) -> None:
    rows = [f"h{i},Holder {i},staff,,,,,,,," for i in range(11)]
    too_many = parse(index, *rows, max_rows=10)
    assert messages(too_many) == ["input: more than 10 rows (line 12); split the file"]
    assert too_many.rows == ()
    assert len(parse(index, *rows[:10], max_rows=10).rows) == 10
    too_big = parse_holders_csv(HEADER + "\n" + "x" * 3_000_000, index)
    assert messages(too_big) == ["input: the file is larger than 2000000 bytes"]
    multibyte = HEADER + "\n" + "王" * 700_000  # 700k characters, 2.1 MB of UTF-8
    assert messages(parse_holders_csv(multibyte, index)) == ["input: the file is larger than 2000000 bytes"]


def test_text_that_was_not_utf8_is_refused(index: AccessIndex) -> None:
    smuggled = (HEADER + "\nh1,caf\xe9,staff,,,,,,,,\n").encode("latin-1").decode("utf-8", "surrogateescape")
    assert messages(parse_holders_csv(smuggled, index)) == ["input: the file is not valid UTF-8 text"]


def test_broken_quoting_is_a_row_error(index: AccessIndex) -> None:
    result = parse(
        index, 'a1,"A"x,staff,,,,,,,,', "a2,B,staff,,,,,,,,", 'a3,"never closed,staff,,,,,,,,', "a4,D,staff,,,,,,,,"
    )
    assert messages(result) == [
        "line 2: row: not valid CSV: ',' expected after '\"'",
        "line 4: row: a quoted field opened here is never closed (the rest of the file was read into it)",
    ]
    assert [row.holder.id for row in result.rows] == ["a2"]


def test_nul_bytes_and_huge_fields(index: AccessIndex) -> None:
    result = parse(index, "a1,A\x00B,staff,,,,,,,,", "a2,B,staff,,,,," + "9" * 200_000 + ",,,")
    assert messages(result) == [
        "line 2: name: must not contain control characters",
        "line 3: row: not valid CSV: field larger than field limit (131072)",
    ]


def test_parsing_changes_nothing_in_the_index(index: AccessIndex) -> None:
    before = index.to_snapshot()
    parse(index, "a1,A,staff,,h10301,10,5001,1234,staff-all,,", "alice,Alice,resident,3-201,h10301,10,1009,,,,")
    assert index.to_snapshot() == before


def test_too_many_errors_stop_early(index: AccessIndex) -> None:
    result = parse(index, *[f"h{i},H,tenant,,,,,,,," for i in range(600)])
    assert len(result.errors) == 501
    assert str(result.errors[-1]) == "line 501: row: stopped after 500 errors"


def test_extended_unlock_column(index: AccessIndex) -> None:
    header = "holder_id,name,kind,apartment,extended_unlock"
    result = parse(
        index,
        "w1,Wei,resident,5-101,yes",
        "w2,Wu,resident,5-102,",
        "w3,Xu,resident,5-103,FALSE",
        "w4,Yu,resident,5-104,maybe",
        header=header,
    )
    assert messages(result) == ["line 5: extended_unlock: yes or no"]
    flags = {row.holder.id: row.holder.extended_unlock for row in result.rows}
    assert flags == {"w1": True, "w2": False, "w3": False}


def test_every_column_is_documented_and_accepted(index: AccessIndex) -> None:
    documented = {line.split()[0] for line in csv_import.__doc__.splitlines() if line[:1].isalpha()}
    assert set(COLUMNS) <= documented
    result = parse(index, "s1,Sam,staff" + "," * (len(COLUMNS) - 3), header=",".join(COLUMNS))
    assert not result.errors and [row.holder.id for row in result.rows] == ["s1"]
