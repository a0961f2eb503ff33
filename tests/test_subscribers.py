"""Subscribers: CSV import/export, the bad-input cases, statuses, and the CLI commands.

Every test taking `store` or `database_url` runs on SQLite, and on PostgreSQL when
NEWSLETTER_TEST_DATABASE_URL is set (see conftest.py).  Assertions read the database back.
"""

from __future__ import annotations

import csv
import io
import json
import multiprocessing
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from email_validator import EmailNotValidError, validate_email

from newsletter.audience.addresses import normalize_address
from newsletter.audience.csv_export import export_csv, export_csv_file
from newsletter.audience.csv_import import ImportReport, import_csv
from newsletter.audience.lists import list_summaries
from newsletter.audience.subscribers import (
    add_subscriber,
    get_subscriber,
    iter_subscribers,
    unsubscribe,
)
from newsletter.cli.main import main
from newsletter.errors import InputError
from newsletter.store import Store
from newsletter.store.schema import lists, memberships, subscribers

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "csv"
EXAMPLE = REPO / "subscribers" / "example.csv"


# ---------------------------------------------------------------------------------------
# What the tests read back
# ---------------------------------------------------------------------------------------


def rows_by_email(store: Store) -> dict[str, dict]:
    """Every subscriber row keyed by its stored address, with its list slugs (`lists`) and
    its standing on each (`on`: {slug: status})."""
    with store.read() as conn:
        people = {row.id: dict(row._mapping) for row in conn.execute(sa.select(subscribers))}
        for subscriber_id, slug, status in conn.execute(
            sa.select(memberships.c.subscriber_id, lists.c.slug, memberships.c.status).join(
                lists, lists.c.id == memberships.c.list_id
            )
        ):
            people[subscriber_id].setdefault("lists", set()).add(slug)
            people[subscriber_id].setdefault("on", {})[slug] = status
    return {person["email"]: person for person in people.values()}


def table_counts(store: Store) -> tuple[int, int, int]:
    with store.read() as conn:
        return tuple(
            conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
            for table in (subscribers, lists, memberships)
        )


def checked_import(store: Store, path: Path, **options) -> ImportReport:
    """Import, and assert the report's counts add up to the rows read."""
    report = import_csv(store, path, **options)
    assert report.imported + report.updated + report.unchanged + report.skipped == report.rows
    assert report.skipped == sum(1 for problem in report.problems if problem.skipped)
    return report


def reasons(report: ImportReport) -> dict[int, str]:
    return {problem.row: problem.reason for problem in report.problems}


@pytest.fixture
def cli(database_url, tmp_path, monkeypatch):
    """Runs `newsletter ...` in-process against the test database, from an empty directory
    (so no newsletter.toml is picked up)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", database_url)
    monkeypatch.delenv("NEWSLETTER_CONFIG", raising=False)
    runner = CliRunner()

    def run(*args: str, input: str | None = None):
        return runner.invoke(main, list(args), input=input, catch_exceptions=False)

    return run


# ---------------------------------------------------------------------------------------
# Addresses
# ---------------------------------------------------------------------------------------


def test_address_is_trimmed_and_its_domain_lowercased_and_punycoded():
    assert normalize_address("  Alice.Smith@Example.COM \t") == (
        "Alice.Smith@example.com",
        "alice.smith@example.com",
        False,
    )
    assert normalize_address("kontakt@BÜCHER.example").email == "kontakt@xn--bcher-kva.example"


def test_non_ascii_local_part_is_valid_but_marked_smtputf8():
    address = normalize_address("用户@example.com")
    assert address.smtputf8
    assert address.email == "用户@example.com"


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "no-at-sign",
        "a@@example.com",
        "a@b@example.com",
        "a b@example.com",
        "a@localhost",
        "a@example.test",
        "Alice <a@example.com>",
        ".a@example.com",
    ],
)
def test_invalid_addresses_are_refused_with_the_reason(raw):
    with pytest.raises(InputError):
        normalize_address(raw)


def test_normalize_address_agrees_with_email_validator_on_tricky_addresses():
    # The fast path for plain ASCII addresses must never accept what email-validator
    # refuses, nor normalise differently.
    rng = random.Random(7)
    locals_ = [
        "a",
        "A.B",
        "x+tag",
        "o'neil",
        "a..b",
        ".a",
        "a.",
        "postmaster",
        "Abuse",
        "用户",
        "x" * 64,
        "x" * 65,
        '"quoted"',
        "a b",
        "a=b",
        "{x}",
        "a~b",
        "ü",
    ]
    domains = [
        "example.com",
        "EXAMPLE.org",
        "bücher.example",
        "xn--bcher-kva.example",
        "example",
        "-x.example.com",
        "x-.example.com",
        "a.b.c.example.net",
        "example.test",
        "localhost",
        "1.2.3.4",
        "[1.2.3.4]",
        "e_x.com",
        "x" * 63 + ".com",
        "x" * 64 + ".com",
        "example.com.",
        "例子.example",
    ]
    samples = [f"{local}@{domain}" for local in locals_ for domain in domains]
    samples += [
        "".join(rng.choice("ab.@+-_Xü ") for _ in range(rng.randrange(1, 12))) + "@example.com" for _ in range(300)
    ]
    for raw in samples:
        try:
            valid = validate_email(raw.strip(), check_deliverability=False)  # trimming is ours, on purpose
            expected = f"{valid.local_part}@{valid.ascii_domain}"
        except EmailNotValidError:
            expected = None
        try:
            got = normalize_address(raw).email
        except InputError:
            got = None
        assert got == expected, raw


# ---------------------------------------------------------------------------------------
# The bad-input cases of the issue; each on SQLite and PostgreSQL
# ---------------------------------------------------------------------------------------


def test_utf8_bom_and_crlf_import_cleanly(store):
    report = checked_import(store, FIXTURES / "bom_crlf.csv")
    assert (report.rows, report.imported, report.skipped) == (2, 2, 0)
    people = rows_by_email(store)
    # The BOM must not become part of the first header ("\ufeffemail" would be no email column).
    assert people["wang.fang@example.com"]["name"] == "王芳"
    assert people["alice@example.com"]["lists"] == {"default", "weekly"}
    assert not any("\r" in person["name"] for person in people.values())


def test_gbk_file_without_encoding_fails_naming_the_row_and_writes_nothing(store):
    with pytest.raises(InputError) as caught:
        import_csv(store, FIXTURES / "gbk.csv")
    message = str(caught.value)
    assert "gbk.csv: row 2:" in message
    assert "not valid utf-8" in message and "--encoding gbk" in message
    assert table_counts(store) == (0, 0, 0)


def test_gbk_file_with_encoding_gbk_imports_the_chinese_names(store):
    report = checked_import(store, FIXTURES / "gbk.csv", encoding="gbk")
    assert report.imported == 3
    people = rows_by_email(store)
    assert people["li.wei@example.com"]["name"] == "李伟"
    assert people["zhang.min@example.org"]["attributes"] == {"city": "深圳"}


def test_gbk_through_the_cli_fails_with_one_line_then_imports_with_encoding(cli, store):
    result = cli("subscribers", "import", str(FIXTURES / "gbk.csv"))
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "row 2" in lines[0]
    assert "Traceback" not in result.output
    assert table_counts(store)[0] == 0

    result = cli("subscribers", "import", str(FIXTURES / "gbk.csv"), "--encoding", "gbk")
    assert result.exit_code == 0, result.output
    assert "3 rows: 3 imported, 0 updated, 0 unchanged, 0 skipped" in result.stdout
    assert rows_by_email(store)["li.wei@example.com"]["name"] == "李伟"


def test_duplicates_in_different_case_keep_the_first_row(store):
    report = checked_import(store, FIXTURES / "duplicates_case.csv")
    assert (report.rows, report.imported, report.skipped) == (4, 2, 2)
    assert reasons(report)[4] == "ALICE@example.com repeats row 2 (the first row wins)"
    assert reasons(report)[5] == "alice@example.com repeats row 2 (the first row wins)"
    people = rows_by_email(store)
    assert set(people) == {"Alice@example.com", "bob@example.org"}
    assert people["Alice@example.com"]["name"] == "First Alice"


def test_duplicates_across_batches_keep_the_first_row(store):
    # batch_size=1 puts every row in its own transaction: the first row must still win.
    report = checked_import(store, FIXTURES / "duplicates_case.csv", batch_size=1)
    assert (report.imported, report.skipped) == (2, 2)
    assert reasons(report)[5] == "alice@example.com repeats row 2 (the first row wins)"
    assert rows_by_email(store)["Alice@example.com"]["name"] == "First Alice"


def test_duplicate_of_an_existing_subscriber_is_reported_once(store):
    add_subscriber(store, "alice@example.com", name="Before")
    report = checked_import(store, FIXTURES / "duplicates_case.csv", batch_size=1)
    assert (report.updated, report.imported, report.skipped) == (1, 1, 2)
    assert rows_by_email(store)["alice@example.com"]["name"] == "First Alice"


def test_empty_rows_are_skipped_and_counted(store):
    report = checked_import(store, FIXTURES / "empty_rows.csv")
    assert (report.rows, report.imported, report.skipped) == (5, 2, 3)
    assert reasons(report) == {3: "empty row", 4: "empty row", 6: "empty row"}


def test_address_with_two_at_signs_is_reported_and_the_rest_imported(store):
    report = checked_import(store, FIXTURES / "two_at_signs.csv")
    assert (report.rows, report.imported, report.skipped) == (3, 1, 2)
    assert (
        "row 2" in str(report.problems[0])
        and "'alice@@example.com' is not a valid address" in report.problems[0].reason
    )
    assert "column 'email'" in report.problems[0].reason
    assert set(rows_by_email(store)) == {"bob@example.org"}


def test_quoted_name_with_a_comma_stays_one_name(store):
    report = checked_import(store, FIXTURES / "quoted_comma.csv")
    assert (report.imported, report.skipped) == (2, 0)
    people = rows_by_email(store)
    assert people["bob@example.org"]["name"] == "Smith, Bob"
    assert people["bob@example.org"]["lists"] == {"default", "weekly"}
    assert people["carol@example.net"]["name"] == 'Jones, Carol "CJ"'


def test_idn_domain_is_stored_as_punycode_and_matched_in_either_form(store):
    report = checked_import(store, FIXTURES / "idn_domain.csv")
    assert (report.imported, report.flagged) == (3, 1)
    people = rows_by_email(store)
    assert {"müller@xn--bcher-kva.example", "kontakt@xn--bcher-kva.example", "wang@xn--fsqu00a.example"} == set(people)
    # The same person written with the punycode domain is the same subscriber.
    assert get_subscriber(store, "Kontakt@xn--bcher-kva.example").name == "Kontakt"


def test_header_without_email_column_fails_and_writes_nothing(store):
    with pytest.raises(InputError) as caught:
        import_csv(store, FIXTURES / "no_email_column.csv")
    assert str(caught.value) == (
        f"{FIXTURES / 'no_email_column.csv'}: row 1 (header): no 'email' column (found 'name', 'address', 'city')"
    )
    assert table_counts(store) == (0, 0, 0)


def test_wrong_shape_through_the_cli_is_one_line_and_exit_1(cli, store):
    result = cli("subscribers", "import", str(FIXTURES / "no_email_column.csv"))
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        f"error: {FIXTURES / 'no_email_column.csv'}: row 1 (header): no 'email' column (found 'name', 'address', 'city')"
    ]
    assert result.stdout == ""


def test_zero_byte_file_fails_and_writes_nothing(store):
    with pytest.raises(InputError, match=r"empty.csv: the file is empty; expected a header row with an 'email' column"):
        import_csv(store, FIXTURES / "empty.csv")
    assert table_counts(store) == (0, 0, 0)


def test_file_that_is_not_csv_fails_and_writes_nothing(store, tmp_path):
    with pytest.raises(InputError, match=r"not_csv.png: row 1: the bytes .* are not valid utf-8"):
        import_csv(store, FIXTURES / "not_csv.png")
    workbook = tmp_path / "readers.csv"
    workbook.write_bytes(b"PK\x03\x04" + bytes(100))  # an .xlsx renamed .csv
    with pytest.raises(InputError, match=r"this is an Excel workbook \(.xlsx\), not CSV"):
        import_csv(store, workbook)
    text_not_csv = tmp_path / "notes.csv"
    text_not_csv.write_text("# Meeting notes\n\nCall alice@example.com about the launch.\n")
    with pytest.raises(InputError, match=r"row 1 \(header\): no 'email' column"):
        import_csv(store, text_not_csv)
    assert table_counts(store) == (0, 0, 0)


def test_undecodable_byte_after_a_multiline_cell_names_the_csv_row(store):
    with pytest.raises(
        InputError, match=r"multiline_then_bad_byte.csv: row 3 \(line 4\): the bytes b'\\xe9b\\n' are not valid utf-8"
    ):
        import_csv(store, FIXTURES / "multiline_then_bad_byte.csv")
    assert table_counts(store) == (0, 0, 0)


def test_row_with_more_cells_than_the_header_is_skipped(store):
    report = checked_import(store, FIXTURES / "too_many_cells.csv")
    assert (report.imported, report.skipped) == (1, 1)
    assert reasons(report)[2].startswith("3 cells but the header has 2")


def test_non_ascii_local_part_is_imported_but_flagged(store):
    report = checked_import(store, FIXTURES / "non_ascii_local_part.csv")
    assert (report.imported, report.skipped, report.flagged) == (2, 0, 1)
    (warning,) = report.problems
    assert not warning.skipped and warning.row == 2 and "SES cannot send to it" in warning.reason
    assert "用户@example.com" in rows_by_email(store)


def test_unknown_encoding_and_utf16_are_refused(store, tmp_path):
    with pytest.raises(InputError, match="unknown encoding 'nope'"):
        import_csv(store, EXAMPLE, encoding="nope")
    with pytest.raises(InputError, match="not supported"):
        import_csv(store, EXAMPLE, encoding="utf-16")
    assert import_csv(store, FIXTURES / "bom_crlf.csv", encoding="UTF-8-SIG").imported == 2
    unicode_text = tmp_path / "unicode.csv"
    unicode_text.write_bytes("email\tname\r\na@example.com\tA\r\n".encode("utf-16"))
    with pytest.raises(InputError, match="UTF-16"):
        import_csv(store, unicode_text)


# ---------------------------------------------------------------------------------------
# Statuses, re-imports, dry runs, interruptions
# ---------------------------------------------------------------------------------------


def test_reimporting_the_same_file_changes_nothing(store):
    first = checked_import(store, EXAMPLE)
    before = rows_by_email(store)
    second = checked_import(store, EXAMPLE)
    assert (first.imported, second.imported, second.updated, second.unchanged) == (10, 0, 0, 10)
    assert rows_by_email(store) == before


@pytest.mark.parametrize("status", ["bounced", "complained"])
def test_import_never_lifts_a_bounce_or_complaint_on_the_address(store, status):
    checked_import(store, EXAMPLE)
    with store.begin() as conn:
        conn.execute(subscribers.update().where(subscribers.c.email == "li.wei@example.com").values(status=status))
    report = checked_import(store, EXAMPLE)
    assert (report.skipped, report.unchanged) == (1, 9)
    assert f"li.wei@example.com is {status}" in reasons(report)[3] and "--resubscribe" in reasons(report)[3]
    assert rows_by_email(store)["li.wei@example.com"]["status"] == status


def test_import_never_puts_anyone_back_on_a_list_they_left(store):
    checked_import(store, EXAMPLE)
    unsubscribe(store, "li.wei@example.com", list_slug="default")
    report = checked_import(store, EXAMPLE)
    assert (report.skipped, report.unchanged) == (1, 9)
    assert reasons(report)[3].startswith("li.wei@example.com unsubscribed from default since ")
    assert "--resubscribe" in reasons(report)[3]
    assert rows_by_email(store)["li.wei@example.com"]["on"] == {"default": "unsubscribed"}


def test_a_left_list_is_refused_while_the_rows_other_lists_still_apply(store, tmp_path):
    add_subscriber(store, "reader@example.com", list_slug="daily")
    unsubscribe(store, "reader@example.com", list_slug="daily")
    both = tmp_path / "both.csv"
    both.write_text('email,lists\nreader@example.com,"daily,weekly"\n', encoding="utf-8")
    report = checked_import(store, both)
    assert (report.updated, report.skipped) == (1, 0)
    (problem,) = report.problems
    assert not problem.skipped and "unsubscribed from daily" in problem.reason
    assert rows_by_email(store)["reader@example.com"]["on"] == {"daily": "unsubscribed", "weekly": "active"}


def test_resubscribe_puts_them_back_on_the_rows_lists_only(store, tmp_path):
    add_subscriber(store, "reader@example.com", list_slug="daily")
    add_subscriber(store, "reader@example.com", list_slug="weekly")
    unsubscribe(store, "reader@example.com")
    daily = tmp_path / "daily.csv"
    daily.write_text("email\nreader@example.com\n", encoding="utf-8")
    report = checked_import(store, daily, list_slug="daily", resubscribe=True)
    assert report.updated == 1
    person = rows_by_email(store)["reader@example.com"]
    assert person["on"] == {"daily": "active", "weekly": "unsubscribed"}
    with store.read() as conn:
        source = conn.execute(
            sa.select(memberships.c.change_source)
            .join(lists, lists.c.id == memberships.c.list_id)
            .where(lists.c.slug == "daily")
        ).scalar_one()
    assert source == "import"


def test_resubscribe_makes_a_bounced_address_active_again(store):
    checked_import(store, EXAMPLE)
    with store.begin() as conn:
        conn.execute(
            subscribers.update()
            .where(subscribers.c.email == "li.wei@example.com")
            .values(status="bounced", suppressed_at=sa.func.current_timestamp())
        )
    report = checked_import(store, EXAMPLE, resubscribe=True)
    assert (report.updated, report.unchanged) == (1, 9)
    person = rows_by_email(store)["li.wei@example.com"]
    assert person["status"] == "active" and person["suppressed_at"] is None


def test_status_column_keeps_suppressions_and_refuses_unknown_statuses(store):
    report = checked_import(store, FIXTURES / "statuses.csv")
    assert (report.imported, report.skipped) == (3, 1)
    assert reasons(report)[5].startswith("column 'status': 'maybe' is not one of")
    people = rows_by_email(store)
    # unsubscribed is a standing on the row's lists (here the default one); bounced is the address's.
    assert people["gone@example.com"]["status"] == "active"
    assert people["gone@example.com"]["on"] == {"default": "unsubscribed"}
    assert people["bounce@example.com"]["status"] == "bounced"
    assert people["bounce@example.com"]["suppressed_at"] is not None


def test_a_row_marked_unsubscribed_unsubscribes_an_active_subscriber(store):
    add_subscriber(store, "gone@example.com")
    checked_import(store, FIXTURES / "statuses.csv")
    assert rows_by_email(store)["gone@example.com"]["on"] == {"default": "unsubscribed"}


def test_list_columns_give_the_standing_on_each_list(store, tmp_path):
    sheet = tmp_path / "standings.csv"
    sheet.write_text(
        "email,status,list:daily,list:weekly\n"
        "both@example.com,active,active,pending\n"
        "left@example.com,active,unsubscribed,\n"
        "odd@example.com,active,maybe,\n"
        "old@example.com,unconfirmed,,\n",
        encoding="utf-8",
    )
    report = checked_import(store, sheet)
    assert (report.imported, report.skipped) == (3, 1)
    assert reasons(report)[4].startswith("column 'list:daily': 'maybe' is not one of active, pending, unsubscribed")
    people = rows_by_email(store)
    assert people["both@example.com"]["on"] == {"daily": "active", "weekly": "pending"}
    assert people["left@example.com"]["on"] == {"daily": "unsubscribed"}
    # A row naming no list joins the default one, with the standing its status gives.
    assert people["old@example.com"]["on"] == {"default": "pending"}


def test_new_lists_and_names_update_existing_subscribers(store, tmp_path):
    checked_import(store, EXAMPLE)
    changed = tmp_path / "changed.csv"
    changed.write_text("email,name,lists\nLI.WEI@example.com,Li Wei,weekly\nzhao.lei@example.org,,\n", encoding="utf-8")
    report = checked_import(store, changed)
    assert (report.updated, report.unchanged) == (1, 1)
    person = rows_by_email(store)["li.wei@example.com"]
    assert person["name"] == "Li Wei" and person["lists"] == {"default", "weekly"}
    # An empty name cell keeps the stored name.
    assert rows_by_email(store)["zhao.lei@example.org"]["name"] == "赵磊"


def test_list_option_adds_every_row_to_that_list(store):
    checked_import(store, EXAMPLE, list_slug="vip")
    people = rows_by_email(store)
    assert all("vip" in person["lists"] for person in people.values())
    assert people["chen.jing@example.com"]["lists"] == {"weekly", "vip"}


def test_rows_without_lists_join_the_default_list(store):
    checked_import(store, FIXTURES / "two_at_signs.csv", default_list="readers")
    assert rows_by_email(store)["bob@example.org"]["lists"] == {"readers"}


def test_dry_run_reports_the_same_counts_and_writes_nothing(store):
    add_subscriber(store, "alice@example.com", name="Before")
    before = rows_by_email(store), table_counts(store)
    for fixture in ("duplicates_case.csv", "empty_rows.csv", "two_at_signs.csv", "statuses.csv"):
        dry = checked_import(store, FIXTURES / fixture, dry_run=True, batch_size=2)
        assert (rows_by_email(store), table_counts(store)) == before
        assert dry.dry_run and "dry run, nothing written" in dry.summary()
    dry = checked_import(store, EXAMPLE, dry_run=True, batch_size=3)
    real = checked_import(store, EXAMPLE, batch_size=3)
    for field in ("rows", "imported", "updated", "unchanged", "skipped", "flagged"):
        assert getattr(dry, field) == getattr(real, field), field
    assert [str(p) for p in dry.problems] == [str(p) for p in real.problems]


def _install_failing_trigger(store: Store, email_key: str) -> None:
    """Make the database itself reject one insert, as a full disk or a killed connection would."""
    with store.begin() as conn:
        if store.dialect == "sqlite":
            conn.exec_driver_sql(
                "CREATE TRIGGER refuse_one BEFORE INSERT ON subscribers "
                f"WHEN NEW.email_key = '{email_key}' BEGIN SELECT RAISE(ABORT, 'refused by test'); END"
            )
        else:
            conn.exec_driver_sql(
                "CREATE FUNCTION refuse_one() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"IF NEW.email_key = '{email_key}' THEN RAISE EXCEPTION 'refused by test'; END IF; RETURN NEW; END $$"
            )
            conn.exec_driver_sql(
                "CREATE TRIGGER refuse_one BEFORE INSERT ON subscribers FOR EACH ROW EXECUTE FUNCTION refuse_one()"
            )


def test_failure_in_a_batch_leaves_earlier_batches_whole_and_nothing_of_its_own(store):
    # example.csv rows 2..11; with batches of 3, row 6 (alice) fails the second batch (rows 5-7).
    _install_failing_trigger(store, "alice.nguyen@example.com")
    with pytest.raises(sa.exc.DBAPIError):
        import_csv(store, EXAMPLE, batch_size=3)
    people = rows_by_email(store)
    assert set(people) == {"wang.fang@example.com", "li.wei@example.com", "zhang.min@example.org"}
    assert all(person["lists"] for person in people.values())
    with store.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(memberships)).scalar_one() == 4


# ---------------------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------------------


def test_example_imports_exports_and_reimports_with_zero_changes(store, tmp_path):
    first = checked_import(store, EXAMPLE)
    assert (first.imported, first.skipped) == (10, 0)
    exported = tmp_path / "export.csv"
    assert export_csv_file(store, exported) == 10
    assert exported.read_bytes().startswith(b"\xef\xbb\xbf")  # Excel needs the BOM to read UTF-8
    again = checked_import(store, exported)
    assert (again.imported, again.updated, again.unchanged, again.skipped) == (0, 0, 10, 0)
    header, *rows = list(csv.reader(io.StringIO(exported.read_text(encoding="utf-8-sig"))))
    assert header == ["email", "name", "status", "list:default", "list:weekly", "city"]
    assert rows[0] == ["wang.fang@example.com", "王芳", "active", "active", "active", "北京"]
    assert rows[4] == ["chen.jing@example.com", "陈静", "active", "", "active", "成都"]


def test_export_into_a_fresh_database_keeps_everything_including_suppressions(store, tmp_path):
    checked_import(store, EXAMPLE)
    unsubscribe(store, "li.wei@example.com")
    unsubscribe(store, "wang.fang@example.com", list_slug="weekly")
    add_subscriber(store, "pending@example.net", name="P", list_slug="weekly", status="pending")
    with store.begin() as conn:
        conn.execute(
            subscribers.update()
            .where(subscribers.c.email == "zhao.lei@example.org")
            .values(status="complained", suppressed_at=sa.func.current_timestamp())
        )
    exported = tmp_path / "export.csv"
    export_csv_file(store, exported)
    with Store.open(f"sqlite:///{tmp_path / 'other.db'}") as other:
        report = checked_import(other, exported)
        assert report.imported == 11
        second = tmp_path / "second.csv"
        export_csv_file(other, second)
        people = rows_by_email(other)
    assert second.read_bytes() == exported.read_bytes()
    text = exported.read_text(encoding="utf-8-sig")
    assert "li.wei@example.com,李伟,active,unsubscribed,,上海" in text
    assert "wang.fang@example.com,王芳,active,active,unsubscribed,北京" in text
    assert "zhao.lei@example.org,赵磊,complained,active,,广州" in text
    assert people["pending@example.net"]["on"] == {"weekly": "pending"}
    assert people["zhao.lei@example.org"]["status"] == "complained"


def test_export_neutralises_formula_cells_and_import_restores_them(store, tmp_path):
    cells = {
        '=HYPERLINK("https://evil.example.net","click")': "=1+1",
        "+86 138 0000 0000": "-5",
        "@mention": "'already quoted",
        "'=not a formula": "plain",
    }
    for n, (name, value) in enumerate(cells.items()):
        add_subscriber(store, f"cell{n}@example.com", name=name, attributes={"note": value, "=key": "x"})
    exported = tmp_path / "export.csv"
    export_csv_file(store, exported)
    header, *rows = list(csv.reader(io.StringIO(exported.read_text(encoding="utf-8-sig"))))
    assert header == ["email", "name", "status", "list:default", "'=key", "note"]
    # No cell a spreadsheet would evaluate: each starts with ' where it started with = + - @ or '.
    assert [row[1] for row in rows] == [
        '\'=HYPERLINK("https://evil.example.net","click")',
        "'+86 138 0000 0000",
        "'@mention",
        "''=not a formula",
    ]
    assert [row[5] for row in rows] == ["'=1+1", "'-5", "''already quoted", "plain"]
    assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for row in [header, *rows] for cell in row)

    with Store.open(f"sqlite:///{tmp_path / 'other.db'}") as other:
        report = checked_import(other, exported)
        assert report.imported == 4
        people = rows_by_email(other)
        second = tmp_path / "second.csv"
        export_csv_file(other, second)
    assert second.read_bytes() == exported.read_bytes()
    for n, (name, value) in enumerate(cells.items()):
        assert people[f"cell{n}@example.com"]["name"] == name
        assert people[f"cell{n}@example.com"]["attributes"] == {"note": value, "=key": "x"}


def test_an_apostrophe_a_person_typed_is_kept_on_import(store, tmp_path):
    sheet = tmp_path / "typed.csv"
    sheet.write_text("email,name\ntis@example.com,'Tis Me\nquote@example.com,'=1\n", encoding="utf-8")
    checked_import(store, sheet)
    people = rows_by_email(store)
    assert people["tis@example.com"]["name"] == "'Tis Me"
    assert people["quote@example.com"]["name"] == "=1"


def test_export_filters_by_list_and_status(store):
    checked_import(store, EXAMPLE)
    unsubscribe(store, "liu.yang@example.net")
    out = io.StringIO(newline="")
    assert export_csv(store, out, list_slug="weekly", status="active") == 4
    emails = [row[0] for row in csv.reader(io.StringIO(out.getvalue()))][1:]
    assert emails == [
        "wang.fang@example.com",
        "chen.jing@example.com",
        "carol.jones@example.net",
        "dave.miller@example.com",
    ]
    with pytest.raises(InputError, match=r"no list 'nope' \(lists: default, weekly\)"):
        export_csv(store, io.StringIO(), list_slug="nope")


# ---------------------------------------------------------------------------------------
# One subscriber at a time
# ---------------------------------------------------------------------------------------


def test_add_then_unsubscribe_then_refuse_to_add_without_resubscribe(store):
    subscriber, created = add_subscriber(store, " Alice@Example.com ", name="Alice", list_slug="weekly")
    assert created and subscriber.email == "Alice@example.com" and subscriber.lists == ("weekly",)
    assert subscriber.created_at.utcoffset().total_seconds() == 0
    unsubscribed, changed = unsubscribe(store, "alice@EXAMPLE.com")
    assert changed and unsubscribed.memberships == {"weekly": "unsubscribed"} and unsubscribed.status == "active"
    assert not unsubscribed.receives("weekly")
    assert unsubscribe(store, subscriber_id=subscriber.id)[1] is False  # a second click changes nothing
    with pytest.raises(InputError, match="unsubscribed from weekly since .*--resubscribe"):
        add_subscriber(store, "alice@example.com", list_slug="weekly")
    again, created = add_subscriber(store, "alice@example.com", list_slug="weekly", resubscribe=True)
    assert not created and again.receives("weekly")


def test_unsubscribe_from_one_list_keeps_the_others(store):
    add_subscriber(store, "alice@example.com", list_slug="daily")
    add_subscriber(store, "alice@example.com", list_slug="weekly")
    left, changed = unsubscribe(store, "alice@example.com", list_slug="daily")
    assert changed and left.memberships == {"daily": "unsubscribed", "weekly": "active"}
    # Joining another list is not coming back to the one they left.
    joined, _ = add_subscriber(store, "alice@example.com", list_slug="monthly")
    assert joined.memberships == {"daily": "unsubscribed", "monthly": "active", "weekly": "active"}
    with pytest.raises(InputError, match=r"alice@example.com is not on list 'yearly'"):
        unsubscribe(store, "alice@example.com", list_slug="yearly")


def test_unsubscribe_keeps_a_stronger_suppression(store):
    _subscriber, _ = add_subscriber(store, "alice@example.com")
    with store.begin() as conn:
        conn.execute(subscribers.update().values(status="complained"))
    left, _ = unsubscribe(store, "alice@example.com")
    assert left.status == "complained" and left.memberships == {"default": "unsubscribed"}


def test_a_complained_address_is_refused_by_add_without_resubscribe(store):
    add_subscriber(store, "alice@example.com")
    with store.begin() as conn:
        conn.execute(subscribers.update().values(status="complained", suppressed_at=sa.func.current_timestamp()))
    with pytest.raises(InputError, match="alice@example.com is complained since .*--resubscribe"):
        add_subscriber(store, "alice@example.com", list_slug="weekly")
    again, _ = add_subscriber(store, "alice@example.com", list_slug="weekly", resubscribe=True)
    assert again.status == "active" and again.suppressed_at is None
    assert again.memberships == {"default": "active", "weekly": "active"}


def test_list_summaries_count_members_by_status(store):
    from newsletter.config import Settings

    checked_import(store, EXAMPLE)
    unsubscribe(store, "wang.fang@example.com")
    with store.begin() as conn:
        conn.execute(subscribers.update().where(subscribers.c.email == "zhao.lei@example.org").values(status="bounced"))
    summaries = {summary.slug: summary for summary in list_summaries(store, Settings())}
    assert summaries["default"].counts == {
        "active": 6,
        "pending": 0,
        "unsubscribed": 1,
        "bounced": 1,
        "complained": 0,
    }
    assert summaries["weekly"].total == 5 and summaries["weekly"].counts["unsubscribed"] == 1
    assert [s.email for s in iter_subscribers(store, list_slug="default", status="unsubscribed")] == [
        "wang.fang@example.com"
    ]


# ---------------------------------------------------------------------------------------
# The commands
# ---------------------------------------------------------------------------------------


def test_cli_import_prints_counts_and_one_line_per_skipped_row(cli, store):
    result = cli("subscribers", "import", str(FIXTURES / "two_at_signs.csv"))
    assert result.exit_code == 0
    assert (
        result.stdout.strip()
        == f"{FIXTURES / 'two_at_signs.csv'}: 3 rows: 1 imported, 0 updated, 0 unchanged, 2 skipped"
    )
    skipped = result.stderr.strip().splitlines()
    assert [line.split(": ")[1] for line in skipped] == ["row 2", "row 4"]


def test_cli_add_list_export_lists_unsubscribe_remove(cli, store, tmp_path, monkeypatch):
    assert cli("subscribers", "import", str(EXAMPLE)).exit_code == 0
    result = cli("subscribers", "add", "new@example.com", "--name", "新人", "--list", "weekly")
    assert result.exit_code == 0 and result.stdout == "added new@example.com (active; lists: weekly:active)\n"
    assert cli("subscribers", "add", "new@example.com", "--list", "daily").exit_code == 0

    listed = cli("subscribers", "list", "--list", "weekly", "--json")
    people = json.loads(listed.stdout)
    assert [p["email"] for p in people][-1] == "new@example.com" and people[-1]["name"] == "新人"
    assert people[-1]["memberships"] == {"daily": "active", "weekly": "active"}
    assert people[0]["memberships"] == {"default": "active", "weekly": "active"}

    left = cli("subscribers", "unsubscribe", "new@example.com", "--list", "weekly")
    assert left.stdout == "unsubscribed new@example.com from weekly (lists: daily:active,weekly:unsubscribed)\n"
    text = cli("subscribers", "list", "--status", "unsubscribed").stdout
    assert text == "new@example.com\tactive\tdaily:active,weekly:unsubscribed\t新人\n"
    assert cli("subscribers", "list", "--list", "daily", "--status", "unsubscribed").stdout == ""

    result = cli("subscribers", "export", "-o", str(tmp_path / "out.csv"))
    assert result.exit_code == 0 and (tmp_path / "out.csv").exists()
    assert cli("subscribers", "export", "--status", "unsubscribed").stdout.splitlines() == [
        "email,name,status,list:daily,list:weekly",  # no city column: nobody exported has one
        "new@example.com,新人,active,active,unsubscribed",
    ]

    table = cli("lists").stdout.splitlines()
    assert table[0].split() == [
        "list",
        "name",
        "public",
        "active",
        "pending",
        "unsubscribed",
        "bounced",
        "complained",
        "total",
    ]
    assert table[3].split() == ["weekly", "weekly", "no", "5", "0", "1", "0", "0", "6"]
    # Without a configuration the default list is public, and named like the newsletter.
    assert table[2].split()[2] == "yes"

    # Erasing keeps a keyed hash of the address: without a secret it cannot be made.
    no_secret = cli("subscribers", "remove", "new@example.com", "--yes")
    assert no_secret.exit_code == 1 and "no secret configured" in no_secret.stderr
    assert no_secret.stderr.count("\n") == 1 and get_subscriber(store, "new@example.com") is not None
    monkeypatch.setenv("NEWSLETTER_SECRET", "subscriber-tests-0f1e2d3c4b5a69788796a5b4c3d2e1f0")
    refused = cli("subscribers", "remove", "new@example.com", input="n\n")
    assert refused.exit_code == 1 and get_subscriber(store, "new@example.com") is not None
    assert cli("subscribers", "remove", "new@example.com", "--yes").stdout == "removed new@example.com\n"
    assert get_subscriber(store, "new@example.com") is None


def test_cli_user_mistakes_are_one_line_without_traceback(cli, store):
    for args, expected in [
        (("subscribers", "add", "a@@example.com"), "error: 'a@@example.com' is not a valid address"),
        (("subscribers", "unsubscribe", "nobody@example.com"), "error: no subscriber nobody@example.com"),
        (("subscribers", "list", "--list", "nope"), "error: no list 'nope'"),
        (("subscribers", "import", "missing.csv"), "error: missing.csv: no such file"),
    ]:
        result = cli(*args)
        assert result.exit_code == 1, args
        assert result.stderr.startswith(expected) and result.stderr.count("\n") == 1, result.stderr


def test_real_command_in_a_subprocess_refuses_the_wrong_shape(tmp_path):
    # The installed entry point, as an editor runs it: one line on stderr, exit 1.
    database = tmp_path / "news.db"
    result = subprocess.run(
        [sys.executable, "-m", "newsletter", "subscribers", "import", str(FIXTURES / "no_email_column.csv")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"NEWSLETTER_DATABASE_URL": f"sqlite:///{database}", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)},
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: {FIXTURES / 'no_email_column.csv'}: row 1 (header): no 'email' column (found 'name', 'address', 'city')"
    ]


# ---------------------------------------------------------------------------------------
# Concurrent writers
# ---------------------------------------------------------------------------------------


def _write_while_others_write(url: str, folder: str, worker: int, rounds: int) -> None:
    """A process that imports in small batches and adds subscribers one by one, each a
    read-then-write transaction: the pattern that fails with 'database is locked' when
    SQLite transactions start deferred."""
    with Store.open(url) as store:
        for round_ in range(rounds):
            path = Path(folder) / f"w{worker}-{round_}.csv"
            path.write_text("email,name\n" + "".join(f"w{worker}r{round_}n{i}@example.com,W\n" for i in range(20)))
            import_csv(store, path, batch_size=3)
            add_subscriber(store, f"single{worker}-{round_}@example.com", list_slug=f"list{worker}")
            unsubscribe(store, f"single{worker}-{round_}@example.com")


def test_concurrent_writer_processes_do_not_hit_database_is_locked(database_url, tmp_path):
    Store.open(database_url).close()
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=_write_while_others_write, args=(database_url, str(tmp_path), n, 8)) for n in range(3)
    ]
    for process in workers:
        process.start()
    for process in workers:
        process.join(120)
    assert [process.exitcode for process in workers] == [0, 0, 0]
    with Store.open(database_url) as store:
        assert table_counts(store)[0] == 3 * 8 * 21


@pytest.mark.parametrize(
    "fixture, options",
    [
        ("bom_crlf.csv", ()),
        ("gbk.csv", ("--encoding", "gbk")),
        ("duplicates_case.csv", ()),
        ("empty_rows.csv", ()),
        ("two_at_signs.csv", ()),
        ("quoted_comma.csv", ()),
        ("idn_domain.csv", ()),
        ("non_ascii_local_part.csv", ()),
        ("too_many_cells.csv", ()),
        ("statuses.csv", ()),
    ],
)
def test_printed_counts_add_up_to_the_rows_read(cli, fixture, options):
    result = cli("subscribers", "import", str(FIXTURES / fixture), *options)
    assert result.exit_code == 0, result.output
    counts = re.search(r": (\d+) rows?: (\d+) imported, (\d+) updated, (\d+) unchanged, (\d+) skipped", result.stdout)
    rows, imported, updated, unchanged, skipped = map(int, counts.groups())
    assert imported + updated + unchanged + skipped == rows
    assert sum(": skipped: " in line for line in result.stderr.splitlines()) == skipped
    with open(FIXTURES / fixture, "rb") as handle:
        # Every fixture has one record per line after the header.
        assert rows == len(handle.read().splitlines()) - 1
