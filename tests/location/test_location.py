"""`--data` names a directory or a PostgreSQL URL: dispatch, URL parsing, and what a database location refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from fhirgate.config import DataDir
from fhirgate.errors import ConfigError
from fhirgate.location import is_database_url, open_location
from fhirgate.location.postgres import PostgresLocation, split_url


def test_directory_and_url_dispatch(tmp_path: Path) -> None:
    assert isinstance(open_location(tmp_path), DataDir)
    assert isinstance(open_location(str(tmp_path / "new")), DataDir)
    assert isinstance(open_location("postgresql://u@h/db"), PostgresLocation)
    assert isinstance(open_location("postgres://u@h/db"), PostgresLocation)
    assert is_database_url("  POSTGRESQL://u@h/db")
    assert not is_database_url("./postgresql-data")


def test_schema_parameter_is_ours_and_removed_from_the_libpq_url() -> None:
    conninfo, schema, shown = split_url("postgresql://u@h:5433/db?schema=clinic_a&sslmode=require")
    assert schema == "clinic_a"
    assert conninfo == "postgresql://u@h:5433/db?sslmode=require"
    assert shown == "postgresql://u@h:5433/db?schema=clinic_a&sslmode=require"
    assert split_url("postgresql://u@h/db")[1] == "fhirgate"


def test_password_never_shown() -> None:
    location = PostgresLocation("postgresql://u:s3cret-pw@h/db?schema=x")
    assert "s3cret-pw" not in location.name
    assert "s3cret-pw" not in repr(location)
    assert location.name == "postgresql://u:***@h/db?schema=x"
    location = PostgresLocation("postgresql://u@h/db?password=s3cret-pw")
    assert "s3cret-pw" not in location.name
    assert "s3cret-pw" not in location.url  # a password in the query string is not passed on either


@pytest.mark.parametrize("schema", ["Bad", "a-b", "x;drop", "1abc", "a" * 64])
def test_schema_must_be_a_plain_identifier(schema: str) -> None:
    with pytest.raises(ConfigError, match="schema parameter"):
        split_url(f"postgresql://u@h/db?schema={schema}")


def test_an_unreachable_database_is_a_clear_error_without_the_password() -> None:
    location = PostgresLocation("postgresql://u:pw-9876@127.0.0.1:1/db?schema=x&connect_timeout=2")
    with pytest.raises(Exception) as caught:
        location.secret("cursor")
    assert "cannot use PostgreSQL schema x" in str(caught.value)
    assert "pw-9876" not in str(caught.value)


def test_data_dir_answers_the_location_questions(tmp_path: Path) -> None:
    data = DataDir(tmp_path / "d")
    assert data.name == str(data.path)
    assert data.base_dir == data.path
    assert not data.is_database
    issuer = data.dev_issuer()
    assert data.dev_trusted_issuer().issuer == issuer.issuer
