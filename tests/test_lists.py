"""Lists: names, descriptions and visibility from `[lists.SLUG]` and `newsletter lists set`,
and the `newsletter lists` table.  On SQLite and PostgreSQL (conftest.py's `store`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.audience.lists import list_catalog, public_list, set_list
from newsletter.audience.subscribers import add_subscriber
from newsletter.cli.main import main
from newsletter.config import ListSettings, load_settings, replace
from newsletter.errors import ConfigError


def settings_with(tmp_path: Path, text: str = ""):
    path = tmp_path / "newsletter.toml"
    path.write_text('[newsletter]\nname = "AI行业速递"\n' + text, encoding="utf-8")
    return load_settings(path, environ={})


def test_only_the_default_list_is_public_until_the_editor_says_otherwise(store, tmp_path):
    settings = settings_with(tmp_path)
    add_subscriber(store, "reader@example.com", list_slug="default")
    add_subscriber(store, "reader@example.com", list_slug="vip")
    catalog = list_catalog(store, settings)
    assert (catalog["default"].public, catalog["vip"].public) == (True, False)
    # Readers know the default list by the newsletter's name; other lists by theirs.
    assert (catalog["default"].title, catalog["vip"].title) == ("AI行业速递", "vip")
    assert public_list(store, settings, "vip") is None
    assert public_list(store, settings, "no-such-list") is None
    assert public_list(store, settings, "not a slug!") is None

    set_list(store, settings, "vip", name="贵宾", description="每月一封", public=True)
    vip = public_list(store, settings, "vip")
    assert vip is not None and (vip.title, vip.description) == ("贵宾", "每月一封")
    set_list(store, settings, "vip", public=False)
    assert public_list(store, settings, "vip") is None
    assert list_catalog(store, settings)["vip"].title == "贵宾"  # unchanged by --private


def test_a_lists_table_in_the_configuration_wins_key_by_key(store, tmp_path):
    settings = settings_with(
        tmp_path, '[lists.daily]\nname = "每日速递"\npublic = true\n\n[lists.default]\npublic = false\n'
    )
    assert settings.lists == {
        "daily": ListSettings(name="每日速递", public=True),
        "default": ListSettings(public=False),
    }
    change = set_list(store, settings, "daily", name="Daily", description="工作日早上 8 点", public=False)
    assert change.overridden == ("name", "public")
    daily = change.info
    assert (daily.title, daily.description, daily.public) == ("每日速递", "工作日早上 8 点", True)
    # A configured list can be joined before anyone is on it, and the default can be closed.
    assert public_list(store, settings, "daily") is not None
    assert public_list(store, settings, "default") is None
    assert public_list(store, replace(settings, lists={}), "daily") is None  # the database says private


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[lists.daily]\ncolour = 'red'\n", "lists.daily.colour: unknown key (known here: description, name, public)"),
        ("[lists.daily]\npublic = 'maybe'\n", "lists.daily.public: must be true or false"),
        ('[lists."no spaces"]\npublic = true\n', "lists.no spaces: is not a list slug"),
        ("lists = 3\n", "lists: must be a table"),
    ],
)
def test_a_mistake_in_a_lists_table_names_the_key(tmp_path, text, message):
    path = tmp_path / "newsletter.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    assert message in str(caught.value)


def test_cli_lists_set_then_lists_shows_names_visibility_and_counts(database_url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "newsletter.toml").write_text(
        f'[newsletter]\nname = "AI行业速递"\ndatabase = "{database_url}"\n\n[lists.weekly]\npublic = false\n',
        encoding="utf-8",
    )
    runner = CliRunner(env={"NEWSLETTER_CONFIG": None, "NEWSLETTER_DATABASE_URL": None})

    def run(*args: str):
        return runner.invoke(main, list(args), catch_exceptions=False)

    made = run("lists", "set", "daily", "--name", "每日速递", "--description", "工作日早上 8 点", "--public")
    assert made.exit_code == 0 and made.stdout == "daily: 每日速递 (public) — 工作日早上 8 点\n"
    overridden = run("lists", "set", "weekly", "--public")
    assert overridden.exit_code == 0 and overridden.stdout == "weekly: weekly (private)\n"
    assert "warning: [lists.weekly] public in" in overridden.stderr and "overrides" in overridden.stderr
    assert run("subscribers", "add", "reader@example.com", "--list", "daily").exit_code == 0

    table = run("lists").stdout.splitlines()
    assert table[0].split()[:3] == ["list", "name", "public"]
    assert table[1].split() == ["daily", "每日速递", "yes", "1", "0", "0", "0", "0", "1"]
    assert table[2].split() == ["weekly", "weekly", "no", "0", "0", "0", "0", "0", "0"]

    nothing = run("lists", "set", "daily")
    assert nothing.exit_code == 2 and "nothing to set" in nothing.stderr
    bad = run("lists", "set", "no spaces", "--public")
    assert bad.exit_code == 1 and bad.stderr.startswith("error: list 'no spaces' is not a valid slug")
    assert "--name" in run("lists", "set", "--help").stdout
