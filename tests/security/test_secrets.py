"""The masking rules, one case each: URL passwords, secret-looking keys in every form they take in
a command line, a log or a mapping, known values, and what must stay as it is."""

from __future__ import annotations

import logging

import pytest
from pydantic import SecretStr

from coordinator.secrets import MASK, Masker, MaskingFilter, mask_argv, mask_text, mask_url, mask_value

CASES = [
    ("postgresql://app:hunter22@db:5432/prod", "postgresql://app:***@db:5432/prod"),
    ("postgresql://app:p@ss@db/prod", "postgresql://app:***@db/prod"),  # an unencoded @ in it
    ("redis://:s3cret@cache:6379/0", "redis://:***@cache:6379/0"),
    ("https://hooks.example/x?token=abc123&channel=ops", "https://hooks.example/x?token=***&channel=ops"),
    ("http://host:8080/path", "http://host:8080/path"),  # a port is no password
    ("mysql://reader@db/app", "mysql://reader@db/app"),
]
TEXT = [
    ("password=hunter22 user=bob", "password=*** user=bob"),
    ('{"sasl.password": "x9y8z7", "sasl.mechanism": "PLAIN"}',
     '{"sasl.password": "***", "sasl.mechanism": "***"}'),  # every sasl setting counts as secret
    ("api_key: abcd1234", "api_key: ***"),
    ("Authorization: Bearer coord.ci.xyz", "Authorization: Bearer ***"),
    ("spark.hadoop.fs.s3a.secret.key=AKIA12", "spark.hadoop.fs.s3a.secret.key=***"),
    ("partition_key=2024-01-01 rows=5", "partition_key=2024-01-01 rows=5"),
    ("error: exit code 3", "error: exit code 3"),
]


@pytest.mark.parametrize(("url", "shown"), CASES)
def test_url_passwords_and_secret_query_values(url: str, shown: str) -> None:
    assert mask_url(url) == shown


@pytest.mark.parametrize(("text", "shown"), TEXT)
def test_secret_keys_in_free_text(text: str, shown: str) -> None:
    assert mask_text(text) == shown


def test_a_command_line() -> None:
    argv = ["spark-submit", "--conf", "spark.jdbc.password=pw123", "--conf", "spark.sql.shuffle.partitions=8",
            "--password", "pw456", "--token=tk789", "--url", "postgresql://u:pw000@h/db",
            "--partition", "2024-01-01"]
    assert mask_argv(argv) == [
        "spark-submit", "--conf", "spark.jdbc.password=***", "--conf", "spark.sql.shuffle.partitions=8",
        "--password", MASK, "--token=***", "--url", "postgresql://u:***@h/db", "--partition", "2024-01-01"]


def test_settings_values() -> None:
    assert mask_value("api_token", SecretStr("x")) == MASK
    assert mask_value("kafka_security", {"sasl.username": "bob", "sasl.password": "pw"}) == {
        "sasl.username": MASK, "sasl.password": MASK}
    assert mask_value("spark_conf", {"spark.executor.memory": "2g"}) == {"spark.executor.memory": "2g"}
    assert mask_value("mlflow_tracking_uri", "postgresql://m:pw1234@h/ml") == "postgresql://m:***@h/ml"
    assert mask_value("batch_max_events", 1000) == 1000


def test_known_values_are_masked_wherever_they_appear() -> None:
    job = {"env": {"DB_PASSWORD": "n0t-in-a-pattern"}, "command": ["x", "--api-key", "k3y-value"]}
    masker = Masker.of(job)
    said = masker.text("connecting with n0t-in-a-pattern; key k3y-value; ok")
    assert said == "connecting with ***; key ***; ok"
    assert Masker(["abc"]).text("abc is short") == "abc is short"  # too short to be replaced verbatim


def test_the_logging_filter_masks_messages_and_tracebacks() -> None:
    url = "postgresql://u:pw99@h/db"
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "connect %s failed", (url,), None)
    try:
        raise RuntimeError("password=pw77")
    except RuntimeError:
        import sys

        record.exc_info = sys.exc_info()
    assert MaskingFilter().filter(record)
    assert record.getMessage() == "connect postgresql://u:***@h/db failed"
    assert "pw77" not in record.exc_text and "password=***" in record.exc_text
