"""Credentials are masked in any text: URL user info, credential parameters, and the values
of credential-named environment variables; ordinary text is left alone."""

from __future__ import annotations

import logging

import pytest

from hypermetric.masking import MaskingFormatter, masked, secret_values
from hypermetric.storage.files import masked as masked_uri


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "scheduler started (pid 7, postgresql+psycopg://hm:pw-Secret1@db.internal:5432/hm)",
            "scheduler started (pid 7, postgresql+psycopg://***@db.internal:5432/hm)",
        ),
        ("postgresql://hm:p/ss:w@rd@db/hm", "postgresql://***@db/hm"),
        ("s3://AKIDKEY:sec/ret@bucket/prefix?region=x", "s3://***@bucket/prefix?region=x"),
        ("https://ghp_abc123@github.com/org/repo", "https://***@github.com/org/repo"),
        (
            "s3://bucket/p?endpoint_override=h:9000&secret_key=abc&access_key=AK&session_token=t",
            "s3://bucket/p?endpoint_override=h:9000&secret_key=***&access_key=***&session_token=***",
        ),
        (
            "host=db port=5432 password=hunter22 dbname=hm",
            "host=db port=5432 password=*** dbname=hm",
        ),
        ('{"password": "abc123", "user": "hm"}', '{"password": "***", "user": "hm"}'),
        ("postgresql://host/db and sqlite:///x.db", "postgresql://host/db and sqlite:///x.db"),
        ("s3://bucket/a@b /var/lib/hm/data", "s3://bucket/a@b /var/lib/hm/data"),
        (
            "token_f1=0.5 exact_match: 1.0 tokens: 12 key: x",
            "token_f1=0.5 exact_match: 1.0 tokens: 12 key: x",
        ),
        ("", ""),
    ],
)
def test_urls_and_parameters_are_masked_and_nothing_else(text: str, expected: str) -> None:
    assert masked(text) == expected


def test_credential_values_of_the_environment_are_masked_wherever_they_appear(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-Secret-Value")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE1")
    monkeypatch.setenv("HYPERMETRIC_UI_TOKEN", "ui-token-Value")
    monkeypatch.setenv("HYPERMETRIC_DB_URL", "postgresql+psycopg://hm:p%40ss-Word@db/hm")
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # not a credential
    monkeypatch.setenv("SHORT_TOKEN", "abc")  # too short to mask as a literal
    values = secret_values()
    assert {
        "aws-Secret-Value",
        "AKIDEXAMPLE1",
        "ui-token-Value",
        "p%40ss-Word",
        "p@ss-Word",
    } <= set(values)
    assert "disabled" not in values and "abc" not in values and "hm" not in values
    text = "key AKIDEXAMPLE1 secret aws-Secret-Value ui-token-Value p@ss-Word, disabled abc hm"
    assert masked(text) == "key *** secret *** *** ***, disabled abc hm"


def test_extra_secrets_are_masked_too() -> None:
    assert masked("the value is Extra-Secret-1", ["Extra-Secret-1"]) == "the value is ***"


def test_the_storage_uri_mask_is_the_same_rule() -> None:
    assert masked_uri("s3://key:secret@bucket/x") == "s3://***@bucket/x"


def test_a_masking_formatter_masks_messages_and_tracebacks() -> None:
    formatter = MaskingFormatter("%(levelname)s %(message)s")
    try:
        raise RuntimeError("cannot reach postgresql://hm:pw-Secret1@db/hm")
    except RuntimeError as exc:
        record = logging.LogRecord(
            "hypermetric",
            logging.ERROR,
            __file__,
            1,
            "url %s",
            ("s3://k:s@b",),
            (type(exc), exc, exc.__traceback__),
        )
    line = formatter.format(record)
    assert "pw-Secret1" not in line and "k:s@" not in line
    assert line.startswith("ERROR url s3://***@b\nTraceback")
    assert "postgresql://***@db/hm" in line


def test_settings_show_no_secret() -> None:
    from hypermetric.config import load_settings

    shown = repr(
        load_settings(
            environ={},
            home="/tmp/hm-home",
            db_url="postgresql+psycopg://hm:Pa55word-x@db/hm",
            storage="s3://AKIDEXAMPLE:s3cr3t-key@bucket/prefix",
        )
    )
    assert "Pa55word-x" not in shown and "s3cr3t-key" not in shown
    assert "postgresql+psycopg://***@db/hm" in shown and "s3://***@bucket/prefix" in shown
