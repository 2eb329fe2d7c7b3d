"""config.json and DATABASE_URL are read once into a typed Config; mistakes fail loudly."""

import json
import shutil

import pytest

from riskmonitor.config import PROJECT_DIR, load_config, normalize_database_url


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    shutil.copy(PROJECT_DIR / "config.json", tmp_path / "config.json")
    return tmp_path


def edit(root, change):
    raw = json.loads((root / "config.json").read_text())
    change(raw)
    (root / "config.json").write_text(json.dumps(raw))


def test_paths_resolve_from_the_project_not_the_working_directory(root, monkeypatch):
    monkeypatch.chdir("/")
    config = load_config(root)
    assert config.input_folder_path == root.resolve() / "sourcedata"
    assert config.finaldata_csv == root.resolve() / "ingesteddata" / "finaldata.csv"
    assert config.features == ("lastmonth_activity", "lastyear_activity", "number_of_employees")


def test_without_database_url_the_database_is_sqlite_in_the_project(root):
    assert load_config(root).database_url == f"sqlite:///{root.resolve() / 'riskassessment.db'}"


def test_database_url_comes_from_the_environment_before_dotenv(root, monkeypatch):
    (root / ".env").write_text("DATABASE_URL=postgres://u:p@dbhost:5432/fromdotenv\n")
    assert load_config(root).database_url == "postgresql+psycopg2://u:p@dbhost:5432/fromdotenv"
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@envhost/fromenv")
    assert load_config(root).database_url == "postgresql+psycopg2://u@envhost/fromenv"


@pytest.mark.parametrize(("url", "expected"), [
    ("postgres://u:p@h:5432/d", "postgresql+psycopg2://u:p@h:5432/d"),
    ("postgresql://h/d", "postgresql+psycopg2://h/d"),
    ("postgresql+psycopg2://h/d", "postgresql+psycopg2://h/d"),
    ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
])
def test_heroku_and_plain_postgres_urls_use_psycopg2(url, expected):
    assert normalize_database_url(url) == expected


@pytest.mark.parametrize(("change", "message"), [
    (lambda raw: raw.update(surprise=1), "unknown key(s): surprise"),
    (lambda raw: raw.pop("label"), "missing key(s): label"),
    (lambda raw: raw.update(drift_test="vibes"), "drift_test must be one of"),
])
def test_config_mistakes_name_the_key(root, change, message):
    edit(root, change)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_config(root)


def test_config_is_frozen(root):
    config = load_config(root)
    with pytest.raises(AttributeError):
        config.label = "other"
