"""CSV import: a spreadsheet of subscribers into the store, every bad row reported by number.

Spreadsheets arrive from elsewhere (often Excel on Chinese Windows, so GBK), with
duplicates, blank rows and typos.  Import streams the file in batches, one transaction per
batch, and reports every row it did not take with the row number and the reason; a file it
cannot read at all (wrong encoding, no `email` column, not CSV) is refused before anything
is written.  Import never lifts a suppression (leaving a list, a bounce, a complaint) unless
asked, and importing the same file twice changes nothing the second time.

Which lists a row joins, and as what:

- `lists` (or `tags`): slugs the row joins, with the row's `status` if that is a standing
  on a list (pending, unsubscribed), else active; `--list` adds one more for every row;
- `list:SLUG` columns (what the export writes): the standing on that list, one of active,
  pending or unsubscribed, or empty for none;
- a row that names no list joins the default list;
- a `status` of bounced or complained is about the address, so it holds for every list.

Cells that a spreadsheet would run as formulas were written with a `'` in front by the
export (newsletter.audience.csv_cells); import takes it off again.
"""

from __future__ import annotations

import codecs
import csv
import gc
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from newsletter.audience.addresses import Address, clean_name, normalize_address
from newsletter.audience.csv_cells import restore
from newsletter.audience.import_writer import BatchWriter
from newsletter.errors import InputError
from newsletter.store import Store
from newsletter.store.lists import check_list_slug
from newsletter.store.schema import (
    ACTIVE,
    BOUNCED,
    COMPLAINED,
    MEMBERSHIP_STATUSES,
    PENDING,
    UNSUBSCRIBED,
)
from newsletter.tokens import AddressDigests

# Header names (compared trimmed and lowercased) that mean the address, the name, the lists
# and the status; every other named column is kept as an attribute.
EMAIL_COLUMNS = frozenset(
    {"email", "e-mail", "email address", "email_address", "mail", "邮箱", "电子邮箱", "电子邮件", "邮件地址"}
)
NAME_COLUMNS = frozenset({"name", "full name", "full_name", "姓名", "名字"})
LIST_COLUMNS = frozenset({"lists", "list", "tags", "tag"})
STATUS_COLUMNS = frozenset({"status"})
# `list:weekly`: the standing on that one list (what the export writes, one column per list).
LIST_STATUS_PREFIX = "list:"

# What a `status` cell may say.  `unconfirmed` is what exports before per-list standings
# wrote for pending.
IMPORT_STATUSES = (ACTIVE, PENDING, UNSUBSCRIBED, BOUNCED, COMPLAINED)
_STATUS_ALIASES = {"unconfirmed": PENDING}

# Rows per transaction.  Large enough to amortise the round trips, small enough that an
# import holds SQLite's write lock (or PostgreSQL's row locks) for a fraction of a second
# at a time, so the sender and the web server get their turn between batches.
BATCH_SIZE = 5_000

# csv refuses fields over 128 KiB; a line that long is not a subscriber row, so the scan
# refuses the file before writing anything rather than stopping half-way through.
_MAX_LINE_BYTES = 128 * 1024
_SCAN_CHUNK_BYTES = 1 << 20

# Separators accepted inside a `lists` cell; the full-width comma and 、 are what a Chinese
# keyboard types.
_LIST_SEPARATORS = re.compile(r"[,，;；、\s]+")


@dataclass(frozen=True)
class RowProblem:
    """A row that was skipped, or taken with a warning (`skipped=False`)."""

    path: str
    row: int
    reason: str
    skipped: bool = True

    def __str__(self) -> str:
        return f"{self.path}: row {self.row}: {'skipped' if self.skipped else 'warning'}: {self.reason}"


@dataclass
class ImportReport:
    """What an import did.  `imported + updated + unchanged + skipped == rows`."""

    path: str
    dry_run: bool = False
    rows: int = 0
    imported: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    flagged: int = 0
    # Filled only when import_csv was given no `on_problem` callback.
    problems: list[RowProblem] = field(default_factory=list)

    def summary(self) -> str:
        text = (
            f"{self.path}: {self.rows} row{'' if self.rows == 1 else 's'}: {self.imported} imported, {self.updated} updated, "
            f"{self.unchanged} unchanged, {self.skipped} skipped"
        )
        if self.flagged:
            text += f" ({self.flagged} with a non-ASCII local part SES cannot send to)"
        if self.dry_run:
            text += " -- dry run, nothing written"
        return text


class ImportRow(NamedTuple):
    number: int
    address: Address
    name: str
    # The address: active, bounced or complained.
    status: str
    # (list slug, active | pending | unsubscribed) for each list the row names.
    lists: tuple[tuple[str, str], ...]
    attributes: dict


@dataclass(frozen=True)
class _Columns:
    """Where each kind of value sits in a row."""

    width: int
    email: int
    email_header: str
    name: int | None
    status: int | None
    lists: tuple[int, ...]
    # (column, list slug) of the `list:SLUG` columns.
    list_statuses: tuple[tuple[int, str], ...]
    attributes: tuple[tuple[int, str], ...]


def import_csv(
    store: Store,
    path: str | Path,
    *,
    list_slug: str | None = None,
    default_list: str = "default",
    encoding: str = "utf-8",
    dry_run: bool = False,
    resubscribe: bool = False,
    on_problem: Callable[[RowProblem], None] | None = None,
    batch_size: int = BATCH_SIZE,
    digests: AddressDigests | None = None,
) -> ImportReport:
    """Import the subscribers in a CSV file.

    Columns: `email` (required), `name`, `lists` or `tags` (comma-separated list slugs),
    `status`, `list:SLUG`, and any others, kept as attributes (the module docstring says
    which lists a row joins).  Duplicates (case-insensitive) after the first occurrence are
    skipped and reported.  Existing subscribers get a non-empty name, new attributes and
    new lists; on a list they left, or when their address bounced or complained, they are
    not put back unless `resubscribe` (which then puts them back on the row's lists only).
    A row that says unsubscribed, bounced or complained suppresses an active subscriber, so
    an export imported elsewhere keeps its suppressions.  An address that was erased is
    skipped unless `resubscribe` (newsletter.audience.erasure; `digests` under the
    configured secret).

    Problems with single rows go to `on_problem` (or `report.problems`) and never stop the
    rest.  A file that cannot be read as a whole raises InputError before anything is
    written.
    """
    path = Path(path)
    codec = _check_encoding(encoding)
    if list_slug is not None:
        check_list_slug(list_slug)
    check_list_slug(default_list)
    _scan(path, codec)

    report = ImportReport(path=str(path), dry_run=dry_run)
    # Problems are found in two places (parsing a row, then writing its batch); they are
    # held per batch and passed on in row order.
    pending: list[RowProblem] = []

    def problem(row: int, reason: str, *, skipped: bool = True) -> None:
        if skipped:
            report.skipped += 1
        pending.append(RowProblem(str(path), row, reason, skipped))

    def pass_on_problems() -> None:
        pending.sort(key=lambda item: item.row)
        for item in pending:
            if on_problem is not None:
                on_problem(item)
            else:
                report.problems.append(item)
        pending.clear()

    # utf-8-sig reads files with and without the BOM Excel writes.
    text_encoding = "utf-8-sig" if codec.name == "utf-8" else codec.name
    with path.open(encoding=text_encoding, newline="", errors="strict") as handle:
        records = _records(path, csv.reader(handle))
        header = next(records, None)
        if header is None:
            raise InputError(f"{path}: the file has no rows; expected a header row with an 'email' column")
        columns = _columns(path, header[1])
        rows = _parse_rows(path, records, columns, report, problem, list_slug=list_slug, default_list=default_list)
        with _cyclic_gc_paused(), store.connect() as conn:
            writer = BatchWriter(
                conn,
                report,
                problem,
                dry_run=dry_run,
                resubscribe=resubscribe,
                source=f"import:{path.name}",
                digests=digests,
            )
            try:
                for batch in _batches(rows, batch_size):
                    writer.write(batch)
                    pass_on_problems()
            finally:
                writer.close()
                pass_on_problems()
    return report


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    # Each batch allocates a few hundred thousand short-lived containers, and CPython's
    # cyclic collector traversed them again and again: ~25% of an import's time, measured.
    # The import creates no reference cycles, so reference counting frees everything; the
    # collector runs once at the end for anything a library left behind.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
            gc.collect(0)


def _check_encoding(encoding: str) -> codecs.CodecInfo:
    try:
        codec = codecs.lookup(encoding)
    except LookupError:
        raise InputError(f"unknown encoding {encoding!r} (try utf-8, gbk, gb18030, big5, latin-1)") from None
    if codec.name == "utf-8-sig":
        codec = codecs.lookup("utf-8")  # the BOM is always accepted, so this is plain UTF-8
    # The scan cuts the file at newline bytes and csv splits on ASCII commas and quotes;
    # both need an encoding that writes ASCII as itself (UTF-16 and UTF-32 do not).
    sample = '\n\r,"email@'
    try:
        ascii_compatible = sample.encode(codec.name) == sample.encode("ascii")
    except (UnicodeError, LookupError):  # pragma: no cover - exotic codecs
        ascii_compatible = False
    if not ascii_compatible:
        raise InputError(f"encoding {encoding!r} is not supported for CSV here; save the file as 'CSV UTF-8'")
    return codec


def _scan(path: Path, codec: codecs.CodecInfo) -> None:
    """Refuse, before anything is written, a file that is missing, empty, not text in
    `codec`, or not CSV; naming the row where the bytes go wrong."""
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, not a CSV file") from None
    except PermissionError:
        raise InputError(f"{path}: permission denied") from None
    with handle:
        start = handle.read(8)
        if not start:
            raise InputError(f"{path}: the file is empty; expected a header row with an 'email' column")
        if start.startswith(b"PK\x03\x04"):
            raise InputError(f"{path}: this is an Excel workbook (.xlsx), not CSV; in Excel use Save As > 'CSV UTF-8'")
        if start.startswith(b"\xd0\xcf\x11\xe0"):
            raise InputError(
                f"{path}: this is an old Excel workbook (.xls), not CSV; in Excel use Save As > 'CSV UTF-8'"
            )
        if start.startswith((b"\xff\xfe", b"\xfe\xff")):
            raise InputError(f"{path}: the file is UTF-16 text (Excel's 'Unicode Text'); save it as 'CSV UTF-8'")
        handle.seek(0)
        lines_before = 0
        carry = b""
        while True:
            chunk = handle.read(_SCAN_CHUNK_BYTES)
            data = carry + chunk
            if chunk:
                cut = data.rfind(b"\n") + 1
                if cut == 0:
                    if len(data) > _MAX_LINE_BYTES:
                        _refuse_long_line(path, codec, lines_before + 1)
                    carry = data
                    continue
                body, carry = data[:cut], data[cut:]
            else:
                body, carry = data, b""
            if not body:
                break
            _scan_body(path, codec, body, lines_before)
            lines_before += body.count(b"\n")
            if not chunk:
                break


def _scan_body(path: Path, codec: codecs.CodecInfo, body: bytes, lines_before: int) -> None:
    try:
        codec.decode(body, "strict")
    except UnicodeDecodeError as err:
        line = lines_before + body.count(b"\n", 0, err.start) + 1
        bad = body[err.start : err.end + 3]
        hint = ""
        if codec.name == "utf-8":
            hint = "; files saved by Excel on Chinese Windows are usually GBK: try --encoding gbk"
        elif codec.name in ("gbk", "gb2312"):
            hint = "; try --encoding gb18030, which also has the characters GBK lacks"
        raise InputError(
            f"{path}: {_row_of_line(path, codec, line)}: the bytes {bad!r} are not valid {codec.name}{hint}"
        ) from None
    if b"\x00" in body:
        line = lines_before + body.count(b"\n", 0, body.index(b"\x00")) + 1
        raise InputError(f"{path}: {_row_of_line(path, codec, line)}: contains NUL bytes; this is not a CSV text file")
    longest = max(map(len, body.split(b"\n")))
    if longest > _MAX_LINE_BYTES:
        lines = body.split(b"\n")
        index = next(i for i, line in enumerate(lines) if len(line) > _MAX_LINE_BYTES)
        _refuse_long_line(path, codec, lines_before + index + 1)


def _refuse_long_line(path: Path, codec: codecs.CodecInfo, line: int) -> None:
    raise InputError(
        f"{path}: {_row_of_line(path, codec, line)}: a line longer than {_MAX_LINE_BYTES // 1024} KiB; "
        "this is not a subscriber CSV"
    )


def _row_of_line(path: Path, codec: codecs.CodecInfo, line: int) -> str:
    """'row N' for physical line `line` (1-based), counting CSV records as a spreadsheet
    does: a quoted cell may span lines, so rows and lines can differ.  Only called on the
    way to an error, so reading the start of the file again costs nothing that matters."""
    marker = "\ue000"

    def lines_until_failure() -> Iterator[str]:
        with path.open("rb") as handle:
            for number, raw in enumerate(handle, 1):
                if number >= line:
                    break
                yield raw.decode(codec.name, "replace")
        # A marker line: if it lands inside an open quoted cell, the failing line belongs to
        # the record that cell started; either way the records read so far end with it.
        yield marker + "\n"

    try:
        row = sum(1 for _ in csv.reader(lines_until_failure()))
    except csv.Error:
        # A bare CR in an unquoted cell of an earlier line (read here line by line, not as
        # the import reads): the line is all that can be said.
        return f"line {line}"
    return f"row {row}" if row == line else f"row {row} (line {line})"


def _records(path: Path, reader) -> Iterator[tuple[int, list[str]]]:
    number = 0
    try:
        for number, fields in enumerate(reader, 1):
            yield number, fields
    except csv.Error as err:
        # The scan rules out what makes csv fail (NUL bytes, over-long lines); should
        # anything else slip through, rows before this one are already imported.
        raise InputError(f"{path}: row {number + 1}: not readable as CSV: {err}") from err


def _columns(path: Path, header: list[str]) -> _Columns:
    names = [restore(cell.strip().lstrip("\ufeff").strip()) for cell in header]
    if not any(names):
        raise InputError(
            f"{path}: row 1 is empty; the first row must be the header naming the columns, e.g. email,name,lists"
        )
    email = name = status = None
    list_columns: list[int] = []
    list_statuses: list[tuple[int, str]] = []
    attributes: list[tuple[int, str]] = []
    seen: dict[str, int] = {}
    for index, original in enumerate(names):
        if not original:
            continue  # unnamed columns (Excel leaves empty ones at the right) carry nothing to keep
        lowered = original.lower()
        if lowered in seen:
            raise InputError(
                f"{path}: row 1 (header): column {original!r} appears twice "
                f"(columns {seen[lowered] + 1} and {index + 1}); rename one"
            )
        seen[lowered] = index
        if lowered in EMAIL_COLUMNS:
            if email is not None:
                raise InputError(
                    f"{path}: row 1 (header): two address columns, {names[email]!r} and {original!r}; keep one"
                )
            email = index
        elif lowered in NAME_COLUMNS and name is None:
            name = index
        elif lowered in STATUS_COLUMNS:
            status = index
        elif lowered in LIST_COLUMNS:
            list_columns.append(index)
        elif lowered.startswith(LIST_STATUS_PREFIX):
            slug = original[len(LIST_STATUS_PREFIX) :].strip()
            try:
                check_list_slug(slug)
            except InputError as err:
                raise InputError(f"{path}: row 1 (header): column {original!r}: {err}") from None
            list_statuses.append((index, slug))
        else:
            attributes.append((index, original))
    if email is None:
        found = ", ".join(repr(n) for n in names if n) or "nothing"
        hint = ""
        if any("@" in n for n in names):
            hint = " -- the first row looks like data; add a header row such as email,name,lists"
        raise InputError(f"{path}: row 1 (header): no 'email' column (found {found}){hint}")
    return _Columns(
        width=len(names),
        email=email,
        email_header=names[email],
        name=name,
        status=status,
        lists=tuple(list_columns),
        list_statuses=tuple(list_statuses),
        attributes=tuple(attributes),
    )


def _parse_rows(
    path: Path,
    records: Iterator[tuple[int, list[str]]],
    columns: _Columns,
    report: ImportReport,
    problem: Callable[..., None],
    *,
    list_slug: str | None,
    default_list: str,
) -> Iterator[ImportRow]:
    """Valid rows; every other row is reported through `problem` and counted."""
    email_index, name_index, status_index = columns.email, columns.name, columns.status
    width = columns.width
    list_cache: dict[str, tuple[str, ...] | str] = {}
    for number, fields in records:
        report.rows += 1
        if len(fields) > width and any(cell.strip() for cell in fields[width:]):
            problem(
                number,
                f"{len(fields)} cells but the header has {width} (an unquoted comma in a name? "
                "quote cells that contain commas)",
            )
            continue
        if len(fields) < width:
            if not any(cell.strip() for cell in fields):
                problem(number, "empty row")
                continue
            fields = fields + [""] * (width - len(fields))
        raw_email = fields[email_index]
        if not raw_email.strip():
            problem(
                number,
                "empty row" if not any(c.strip() for c in fields) else f"no address in column {columns.email_header!r}",
            )
            continue
        try:
            address = normalize_address(restore(raw_email.strip()))
        except InputError as err:
            problem(number, f"column {columns.email_header!r}: {err}")
            continue
        address_status, list_status = ACTIVE, ACTIVE
        if status_index is not None:
            cell = fields[status_index].strip().lower() or ACTIVE
            cell = _STATUS_ALIASES.get(cell, cell)
            if cell not in IMPORT_STATUSES:
                problem(number, f"column 'status': {fields[status_index]!r} is not one of {', '.join(IMPORT_STATUSES)}")
                continue
            if cell in MEMBERSHIP_STATUSES:
                list_status = cell
            else:
                address_status = cell
        row_lists: dict[str, str] = {}
        if columns.lists:
            cell = ",".join(fields[i] for i in columns.lists)
            parsed = list_cache.get(cell)
            if parsed is None:
                parsed = _parse_lists(cell)
                if len(list_cache) < 10_000:
                    list_cache[cell] = parsed
            if isinstance(parsed, str):
                problem(number, parsed)
                continue
            row_lists = dict.fromkeys(parsed, list_status)
        bad_standing = None
        for index, slug in columns.list_statuses:
            cell = fields[index].strip().lower()
            if not cell:
                continue
            cell = _STATUS_ALIASES.get(cell, cell)
            if cell not in MEMBERSHIP_STATUSES:
                bad_standing = (
                    f"column '{LIST_STATUS_PREFIX}{slug}': {fields[index]!r} is not one of "
                    f"{', '.join(MEMBERSHIP_STATUSES)} (or empty)"
                )
                break
            row_lists[slug] = cell
        if bad_standing is not None:
            problem(number, bad_standing)
            continue
        if list_slug and list_slug not in row_lists:
            row_lists[list_slug] = list_status
        if not row_lists:
            row_lists[default_list] = list_status
        attributes = {}
        for index, key in columns.attributes:
            value = restore(fields[index].strip())
            if value:
                attributes[key] = value
        if address.smtputf8:
            problem(
                number,
                f"{address.email}: the part before the @ is not ASCII; SES cannot send to it (no SMTPUTF8)",
                skipped=False,
            )
            report.flagged += 1
        name = restore(fields[name_index]) if name_index is not None else ""
        yield ImportRow(
            number, address, clean_name(name) if name else "", address_status, tuple(row_lists.items()), attributes
        )


def _parse_lists(cell: str) -> tuple[str, ...] | str:
    """The slugs in a `lists` cell, or the reason they are not slugs."""
    slugs: list[str] = []
    for slug in _LIST_SEPARATORS.split(restore(cell.strip())):
        if not slug:
            continue
        try:
            check_list_slug(slug)
        except InputError as err:
            return f"column 'lists': {err}"
        if slug not in slugs:
            slugs.append(slug)
    return tuple(slugs)


def _batches(rows: Iterable[ImportRow], size: int) -> Iterator[list[ImportRow]]:
    batch: list[ImportRow] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
