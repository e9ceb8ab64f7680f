"""The SES and SNS settings: what they accept and how they refuse."""

from __future__ import annotations

from pathlib import Path

import pytest

from formrelay.settings import ConfigError, Settings, load_settings

TOPIC = "arn:aws:sns:eu-west-1:123456789012:formrelay-ses-events"


def settings(tmp_path: Path, **environ: str) -> Settings:
    return load_settings({"FORMRELAY_INSTANCE_PATH": str(tmp_path), **environ})


def test_topics_are_read_comma_or_space_separated(tmp_path: Path) -> None:
    other = "arn:aws:sns:us-east-1:123456789012:other"
    s = settings(tmp_path, FORMRELAY_SNS_TOPIC_ARNS=f" {TOPIC}, {other}  ")

    assert s.sns_topics == frozenset({TOPIC, other})
    assert settings(tmp_path).sns_topics == frozenset()


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        (
            {"FORMRELAY_SNS_TOPIC_ARNS": "formrelay-ses-events"},
            "FORMRELAY_SNS_TOPIC_ARNS must list SNS topic ARNs, not 'formrelay-ses-events'",
        ),
        (
            {"FORMRELAY_SNS_TOPIC_ARNS": "arn:aws:sqs:eu-west-1:123456789012:queue"},
            "FORMRELAY_SNS_TOPIC_ARNS must list SNS topic ARNs",
        ),
        (
            {"FORMRELAY_SNS_USERNAME": "sns"},
            "FORMRELAY_SNS_USERNAME and FORMRELAY_SNS_PASSWORD go together",
        ),
        (
            {"FORMRELAY_SNS_PASSWORD": "secret"},
            "FORMRELAY_SNS_USERNAME and FORMRELAY_SNS_PASSWORD go together",
        ),
        (
            {"FORMRELAY_SES_RATE_REFRESH_SECONDS": "0.5"},
            "FORMRELAY_SES_RATE_REFRESH_SECONDS must be at least 1",
        ),
        (
            {"FORMRELAY_SES_QUOTA_RETRY_SECONDS": "soon"},
            "FORMRELAY_SES_QUOTA_RETRY_SECONDS must be a number, not 'soon'",
        ),
    ],
)
def test_bad_values_stop_start_up_naming_the_variable(
    tmp_path: Path, environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        settings(tmp_path, **environ)

    assert message in str(raised.value)


def test_the_sns_password_is_masked(tmp_path: Path) -> None:
    s = settings(tmp_path, FORMRELAY_SNS_USERNAME="sns", FORMRELAY_SNS_PASSWORD="s3cret")

    assert s.masked()["FORMRELAY_SNS_PASSWORD"] == "********"
    assert "s3cret" not in repr(s)
