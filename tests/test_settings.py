"""Settings come from arguments, then LOOPML_* environment, then loopml.toml, then defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from loopml.settings import Settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for name in ("LOOPML_HOME", "LOOPML_URI", "LOOPML_ARTIFACTS", "LOOPML_USER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def test_defaults_live_under_dot_loopml(tmp_path):
    s = Settings()
    assert s.home == tmp_path / ".loopml"
    assert s.resolved_uri() == f"sqlite:///{tmp_path / '.loopml' / 'loopml.db'}"
    assert s.resolved_artifacts() == (tmp_path / ".loopml" / "artifacts").as_uri()


def test_environment_wins_over_toml(monkeypatch, tmp_path):
    (tmp_path / "loopml.toml").write_text(
        '[loopml]\nuri = "sqlite:////from/toml.db"\nartifacts = "memory://toml"\n'
    )
    assert Settings().resolved_uri() == "sqlite:////from/toml.db"
    monkeypatch.setenv("LOOPML_URI", "postgresql+psycopg://u@h/db")
    s = Settings()
    assert s.resolved_uri() == "postgresql+psycopg://u@h/db"
    assert s.resolved_artifacts() == "memory://toml"


def test_arguments_win_over_environment(monkeypatch):
    monkeypatch.setenv("LOOPML_HOME", "/env/home")
    assert Settings(home=Path("/arg/home")).home == Path("/arg/home")
    assert Settings().home == Path("/env/home")


def test_bad_values_are_clear_errors(monkeypatch):
    monkeypatch.setenv("LOOPML_METRIC_FLUSH_INTERVAL", "-1")
    with pytest.raises(ValidationError, match="metric_flush_interval"):
        Settings()


def test_user_is_recorded(monkeypatch):
    monkeypatch.setenv("LOOPML_USER", "ci-bot")
    assert Settings().resolved_user() == "ci-bot"
