"""Credentials never appear in output: every form of a MongoDB URI password, and the CLI's
messages for a malformed or unreachable store."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

import atomate2_gmt.settings as settings_module
from atomate2_gmt.cli.app import app
from atomate2_gmt.settings import GMTSettings, mask_uri, remember_uri_secrets, uri_secrets
from atomate2_gmt.stores import candidate_store, describe_store, store_error_reason


@pytest.fixture(autouse=True)
def _no_remembered_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no remembered secrets (they are process-wide)."""
    monkeypatch.setattr(settings_module, "_KNOWN_SECRETS", set())


@pytest.mark.parametrize(
    ("uri", "masked"),
    [
        ("mongodb://alice:s3cr3t@db.example.org/gmt", "mongodb://alice:***@db.example.org/gmt"),
        # unescaped ':' and '/' in the password: a URI parser that stops at '/' sees no '@'
        ("mongodb://alice:S3cr:et/PW@db.example.org/gmt", "mongodb://alice:***@db.example.org/gmt"),
        ("mongodb+srv://u:p@w@h/db", "mongodb+srv://u:***@h/db"),
        ("mongodb://alice:pw?x#y@h:27017/db", "mongodb://alice:***@h:27017/db"),
        ("mongodb://:pw-secret@db.example.org", "mongodb://:***@db.example.org"),
        ("mongodb://lone-token@h/db", "mongodb://***@h/db"),
        ("mongodb://u:p%40ss%2Fw@h/db", "mongodb://u:***@h/db"),
        (
            "mongodb://db.example.org/gmt?authSource=admin&password=hunter2&w=1",
            "mongodb://db.example.org/gmt?authSource=admin&password=***&w=1",
        ),
        (
            "mongodb://h/?authMechanism=MONGODB-AWS&authMechanismProperties="
            "AWS_SESSION_TOKEN:tok3nSecret",
            "mongodb://h/?authMechanism=MONGODB-AWS&authMechanismProperties=***",
        ),
        (
            "mongodb://h/?tlsCertificateKeyFilePassword=k3yPw&appname=gmt",
            "mongodb://h/?tlsCertificateKeyFilePassword=***&appname=gmt",
        ),
        ("mongodb://h/db?password=ab&cd", "mongodb://h/db?password=***&***"),
        ("mongodb://h/db?password=ab#cd", "mongodb://h/db?password=***#***"),
        ("mongodb://h:27017/db?authSource=admin", "mongodb://h:27017/db?authSource=admin"),
        ("/home/me/store.sqlite", "/home/me/store.sqlite"),
    ],
)
def test_every_form_of_a_uri_secret_is_masked(uri: str, masked: str) -> None:
    assert mask_uri(uri) == masked


def test_uris_inside_a_message_are_masked() -> None:
    text = (
        "failed: 'mongodb://alice:S3cr:et/PW@h1:27017,h2/db' then "
        "mongodb://h3/db?password=hunter2 (retry)"
    )
    assert mask_uri(text) == (
        "failed: 'mongodb://alice:***@h1:27017,h2/db' then mongodb://h3/db?password=*** (retry)"
    )


def test_remembered_secrets_are_scrubbed_from_driver_messages() -> None:
    """pymongo quotes the part of a malformed URI after the password's '/', without scheme."""
    import pymongo
    from pymongo.errors import InvalidURI

    uri = "mongodb://alice:S3cr:et/PW@localhost:1/db"
    with pytest.raises(InvalidURI) as info:
        pymongo.MongoClient(uri, connect=False)
    assert "PW@" in str(info.value)  # the driver's own message leaks a piece
    assert {"S3cr:et/PW", "S3cr", "PW"} <= set(uri_secrets(uri))
    remember_uri_secrets(uri)
    reason = store_error_reason(info.value)
    assert reason == 'InvalidURI: Bad database name "***@localhost:1/db"'


def test_settings_remember_the_uri_secrets_when_a_store_is_built() -> None:
    s = GMTSettings(MONGO_URI="mongodb://localhost:1/db?password=hunter2x", STORE_TIMEOUT_S=0.5)
    assert "hunter2x" not in repr(s)
    store = candidate_store(s)
    assert "hunter2x" not in describe_store(store)
    assert mask_uri("server said: hunter2x is wrong") == "server said: *** is wrong"


URIS = {
    "mongodb://alice:S3cr:et/PW@localhost:1/db": ["S3cr:et/PW", "S3cr", "PW@"],
    "mongodb://:pw-s3cret@localhost:1": ["pw-s3cret"],
    "mongodb://localhost:1/db?password=hunter2x": ["hunter2x"],
    "mongodb://alice:S3cr@et@localhost:1/db": ["S3cr@et", "S3cr"],
    "mongodb://u:pw9@localhost:1/?authMechanism=MONGODB-AWS&authMechanismProperties="
    "AWS_SESSION_TOKEN:tok3nSecret": ["tok3nSecret", "pw9"],
}


@pytest.mark.parametrize("uri", list(URIS))
@pytest.mark.parametrize("command", [["query", "-p", "piezo"], ["show", "x.cif"], ["report"]])
def test_cli_errors_for_a_bad_or_unreachable_store_never_show_the_password(
    uri: str, command: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("ATOMATE2_GMT_MONGO_URI", uri)
    monkeypatch.setenv("ATOMATE2_GMT_STORE_TIMEOUT_S", "0.3")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, command)
    out = result.output
    assert result.exit_code != 0
    assert "Error: cannot reach the store mongodb://" in out
    for secret in URIS[uri]:
        assert secret not in out
    assert "Traceback" not in out


@pytest.mark.parametrize("uri", list(URIS))
def test_models_list_on_a_bad_or_unreachable_registry_is_one_clean_line(
    uri: str, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("ATOMATE2_GMT_MONGO_URI", uri)
    monkeypatch.setenv("ATOMATE2_GMT_STORE_TIMEOUT_S", "0.3")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["models", "list"])
    out = result.output
    assert result.exit_code != 0
    assert out.count("cannot open the model registry") == 1
    assert "StoreError(" not in out
    assert "Topology Description" not in out
    for secret in URIS[uri]:
        assert secret not in out


def test_an_escaped_password_is_scrubbed_whole_and_ordinary_words_are_kept() -> None:
    remember_uri_secrets("mongodb://u:p%40ss@h/db")
    assert mask_uri("auth failed for p@ss (p%40ss)") == "auth failed for *** (***)"
    assert mask_uri("the password class is less strict") == "the password class is less strict"
