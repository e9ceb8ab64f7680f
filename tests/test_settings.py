"""Settings: read once from the environment, validated, a bad value named in one line."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from formrelay.settings import (
    DERIVED,
    FIELD_TO_VAR,
    ConfigError,
    Settings,
    load_settings,
    prepare_instance,
)

FORMRELAY = str(Path(sys.executable).parent / "formrelay")


def settings(tmp_path: Path, **environ: str) -> Settings:
    """Settings from exactly these variables, with local state under tmp_path."""
    return load_settings({"FORMRELAY_INSTANCE_PATH": str(tmp_path / "instance"), **environ})


def prepared(tmp_path: Path, **environ: str) -> Settings:
    """Those settings after the app factory has made what running needs on disk."""
    return prepare_instance(settings(tmp_path, **environ))


def test_defaults_need_no_configuration(tmp_path):
    instance = tmp_path / "instance"
    assert settings(tmp_path).masked() == {
        "FORMRELAY_ENV": "development",
        "FORMRELAY_INSTANCE_PATH": str(instance),
        "DATABASE_URL": f"sqlite:///{instance}/formrelay.sqlite3",
        "FORMRELAY_SQLITE_BUSY_TIMEOUT": "30.0",
        "SECRET_KEY": f"(unset: development key in {instance}/secret_key)",
        "FORMRELAY_BASE_URL": "http://127.0.0.1:5000",
        "PORT": "5000",
        "FORMRELAY_ADMIN": "",
        "FORMRELAY_REGISTRATION": "invite",
        "RATELIMIT_STORAGE_URI": "memory://",
        "MAIL_BACKEND": "console",
        "MAIL_DEFAULT_SENDER": "formrelay@localhost",
        "FORMRELAY_MAIL_SUBJECT_PREFIX": "[formrelay]",
        "MAIL_SERVER": "localhost",
        "MAIL_PORT": "25",
        "MAIL_USE_TLS": "false",
        "MAIL_USE_SSL": "false",
        "MAIL_USERNAME": "",
        "MAIL_PASSWORD": "(unset)",
        "FORMRELAY_MAIL_TIMEOUT": "30.0",
        "FORMRELAY_MAIL_CA_FILE": "",
        "AWS_REGION": "",
        "AWS_ACCESS_KEY_ID": "",
        "AWS_SECRET_ACCESS_KEY": "(unset)",
        "AWS_ENDPOINT_URL": "",
        "SES_CONFIGURATION_SET": "",
        "FORMRELAY_SNS_TOPIC_ARNS": "",
        "FORMRELAY_SNS_USERNAME": "",
        "FORMRELAY_SNS_PASSWORD": "(unset)",
        "FORMRELAY_SES_RATE_REFRESH_SECONDS": "300.0",
        "FORMRELAY_SES_QUOTA_RETRY_SECONDS": "1800.0",
        "FORMRELAY_TRUSTED_PROXIES": "0",
        "FORMRELAY_RATE_LIMIT": "10/minute;200/day",
        "FORMRELAY_RATE_LIMIT_GLOBAL": "60/minute;2000/day",
        "FORMRELAY_TURNSTILE_VERIFY_URL": "https://challenges.cloudflare.com/turnstile/v0/siteverify",
        "FORMRELAY_HCAPTCHA_VERIFY_URL": "https://api.hcaptcha.com/siteverify",
        "FORMRELAY_RECAPTCHA_VERIFY_URL": "https://www.google.com/recaptcha/api/siteverify",
        "FORMRELAY_CAPTCHA_TIMEOUT": "3.0",
        "AKISMET_API_KEY": "(unset)",
        "FORMRELAY_AKISMET_URL": "https://rest.akismet.com/1.1/comment-check",
        "FORMRELAY_NOTIFY_LIMIT_PER_FORM": "500",
        "FORMRELAY_NOTIFY_LIMIT_GLOBAL": "5000",
        "FORMRELAY_MAX_BODY_BYTES": "102400",
        "FORMRELAY_MAX_FIELDS": "200",
        "FORMRELAY_MAX_UPLOAD_BODY_BYTES": "110100480",
        "FORMRELAY_STORAGE": "local",
        "FORMRELAY_UPLOAD_PATH": f"(unset: {instance}/uploads)",
        "FORMRELAY_S3_BUCKET": "",
        "FORMRELAY_S3_PREFIX": "uploads/",
        "FORMRELAY_S3_SSE": "AES256",
        "FORMRELAY_DOWNLOAD_LINK_DAYS": "7",
        "FORMRELAY_SENDFILE": "",
        "FORMRELAY_SENDFILE_PREFIX": "/_uploads/",
        "FORMRELAY_ATTACH_MAX_BYTES": "10485760",
        "FORMRELAY_ATTACH_TOTAL_BYTES": "26214400",
        "FORMRELAY_RETENTION_DAYS": "0",
        "FORMRELAY_SEARCH_INDEX": "true",
        "FORMRELAY_COMMITTER": "process",
        "FORMRELAY_WORKER_BATCH_SIZE": "20",
        "FORMRELAY_SEND_RATE": "0.0",
        "FORMRELAY_WORKER_POLL_SECONDS": "1.0",
        "FORMRELAY_LEASE_SECONDS": "300",
        "FORMRELAY_WORKER_HEARTBEAT_SECONDS": "5.0",
        "FORMRELAY_WORKER_GRACE_SECONDS": "15.0",
        "FORMRELAY_WORKER_NICE": "10",
        "FORMRELAY_READY_MAX_DELAY_SECONDS": "300.0",
        "FORMRELAY_RETRY_BASE_SECONDS": "30.0",
        "FORMRELAY_RETRY_MAX_DELAY_SECONDS": "21600.0",
        "FORMRELAY_MAX_ATTEMPTS": "13",
    }


def test_every_setting_has_an_environment_variable():
    fields = Settings.__dataclass_fields__.values()
    assert list(FIELD_TO_VAR) == [f.name for f in fields if not f.metadata.get(DERIVED)]


# -- the base URL and the administrator ----------------------------------------------------
@pytest.mark.parametrize(
    ("environ", "base_url"),
    [
        ({}, "http://127.0.0.1:5000"),
        ({"PORT": "5081"}, "http://127.0.0.1:5081"),
        ({"FORMRELAY_BASE_URL": ""}, "http://127.0.0.1:5000"),  # empty is unset
        (
            {"FORMRELAY_BASE_URL": "https://forms.example.org/", "PORT": "5081"},
            "https://forms.example.org",
        ),
    ],
)
def test_the_base_url_is_the_local_address_on_port_unless_set(tmp_path, environ, base_url):
    assert settings(tmp_path, **environ).base_url == base_url


@pytest.mark.parametrize(
    ("host", "port", "base_url"),
    [
        ("127.0.0.1", 5081, "http://127.0.0.1:5081"),
        ("0.0.0.0", 8000, "http://127.0.0.1:8000"),
        ("localhost", 8000, "http://localhost:8000"),
        ("::", 8000, "http://[::1]:8000"),
        ("::1", 8000, "http://[::1]:8000"),
    ],
)
def test_a_server_gives_out_its_own_address_when_no_base_url_is_set(tmp_path, host, port, base_url):
    serving = settings(tmp_path, PORT="5000").serving_at(host, port)
    assert (serving.base_url, serving.port) == (base_url, port)


def test_a_server_keeps_the_base_url_that_is_set(tmp_path):
    given = settings(tmp_path, FORMRELAY_BASE_URL="http://127.0.0.1:5000")
    assert given.serving_at("127.0.0.1", 5081).base_url == "http://127.0.0.1:5000"


def test_the_administrators_address_is_normalised(tmp_path):
    assert settings(tmp_path, FORMRELAY_ADMIN=" Ann@Example.ORG ").admin_email == "ann@example.org"


# -- the database --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "url",
    [
        "postgres://formrelay:pw@db.example:5432/formrelay",  # as Heroku and Dokku give it
        "postgresql://formrelay:pw@db.example:5432/formrelay",
        "postgresql+psycopg://formrelay:pw@db.example:5432/formrelay",
    ],
)
def test_postgresql_urls_are_accepted_and_used_through_psycopg(tmp_path, url):
    got = settings(tmp_path, DATABASE_URL=url).database_url
    assert got == "postgresql+psycopg://formrelay:pw@db.example:5432/formrelay"


def test_a_sqlite_url_is_kept_as_given(tmp_path):
    url = f"sqlite:///{tmp_path}/forms.sqlite3"
    assert settings(tmp_path, DATABASE_URL=url).database_url == url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("mysql://forms:hunter2@db/forms", "mysql://forms:********@db/forms"),
        ("postgresql+psycopg2://db/forms", "postgresql+psycopg2://db/forms"),
        ("db.example:5432/forms", "db.example:5432/forms"),
    ],
)
def test_another_database_scheme_is_refused_naming_the_variable(tmp_path, url, shown):
    with pytest.raises(ConfigError) as refused:
        settings(tmp_path, DATABASE_URL=url)
    assert str(refused.value) == (
        f"DATABASE_URL must start with postgres://, postgresql:// or sqlite:///, not {shown!r}"
    )


# -- the secret key ------------------------------------------------------------------------
def test_production_requires_a_secret_key(tmp_path):
    with pytest.raises(ConfigError) as refused:
        settings(tmp_path, FORMRELAY_ENV="production")
    assert str(refused.value) == "SECRET_KEY is required when FORMRELAY_ENV=production"


def test_production_uses_the_given_secret_key_and_writes_no_key_file(tmp_path):
    got = settings(tmp_path, FORMRELAY_ENV="production", SECRET_KEY="from-the-environment")
    assert got.secret_key == "from-the-environment"
    assert not (tmp_path / "instance" / "secret_key").exists()


def test_loading_settings_writes_nothing(tmp_path):
    settings(tmp_path)
    settings(tmp_path, DATABASE_URL=f"sqlite:///{tmp_path / 'data' / 'forms.db'}")
    assert list(tmp_path.iterdir()) == []


def test_the_folder_of_a_sqlite_database_is_created(tmp_path):
    # SQLite makes its file but not the folder; production has no key file to make it either.
    prepared(tmp_path, FORMRELAY_ENV="production", SECRET_KEY="k")
    assert (tmp_path / "instance").is_dir()
    prepared(tmp_path, DATABASE_URL=f"sqlite:///{tmp_path / 'data' / 'forms.db'}")
    assert (tmp_path / "data").is_dir()


def test_a_sqlite_folder_that_cannot_be_made_is_a_config_error(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError) as refused:
        prepared(tmp_path, DATABASE_URL=f"sqlite:///{tmp_path / 'file' / 'forms.db'}")
    assert str(refused.value).startswith(
        "DATABASE_URL names a folder for the SQLite database that cannot be created"
    )


def test_development_secret_key_is_generated_once_and_kept_private(tmp_path):
    first = prepared(tmp_path).secret_key
    key_file = tmp_path / "instance" / "secret_key"
    assert re.fullmatch(r"[0-9a-f]{64}", first)
    assert key_file.read_text() == first + "\n"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert prepared(tmp_path).secret_key == first
    assert sorted(p.name for p in key_file.parent.iterdir()) == ["secret_key"]


def test_an_instance_folder_that_cannot_hold_the_key_is_a_config_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ConfigError) as refused:
        prepare_instance(
            load_settings(
                {
                    "FORMRELAY_INSTANCE_PATH": str(blocker / "instance"),
                    "DATABASE_URL": "postgresql://formrelay@db.example/formrelay",
                }
            )
        )
    assert str(refused.value) == (
        "SECRET_KEY is unset and the development key cannot be kept under "
        f"FORMRELAY_INSTANCE_PATH ({blocker / 'instance'}): Not a directory"
    )


# -- malformed values ----------------------------------------------------------------------
SES = {"MAIL_BACKEND": "ses", "AWS_REGION": "eu-west-1", "MAIL_DEFAULT_SENDER": "f@example.org"}


# (variables, the whole message); each message starts with the variable it names.
BAD_VALUES = [
    (
        {"FORMRELAY_ENV": "staging"},
        "FORMRELAY_ENV must be one of development, production, not 'staging'",
    ),
    (
        {"MAIL_BACKEND": "sendmail"},
        "MAIL_BACKEND must be one of console, smtp, ses, not 'sendmail'",
    ),
    ({"MAIL_USE_TLS": "maybe"}, "MAIL_USE_TLS must be true or false, not 'maybe'"),
    ({"MAIL_USE_SSL": "2"}, "MAIL_USE_SSL must be true or false, not '2'"),
    ({"MAIL_PORT": "smtp"}, "MAIL_PORT must be a whole number, not 'smtp'"),
    ({"FORMRELAY_MAX_FIELDS": "2.5"}, "FORMRELAY_MAX_FIELDS must be a whole number, not '2.5'"),
    ({"FORMRELAY_MAIL_TIMEOUT": "soon"}, "FORMRELAY_MAIL_TIMEOUT must be a number, not 'soon'"),
    ({"FORMRELAY_MAIL_TIMEOUT": "nan"}, "FORMRELAY_MAIL_TIMEOUT must be a number, not 'nan'"),
    ({"MAIL_PORT": "-25"}, "MAIL_PORT must not be negative, not '-25'"),
    (
        {"FORMRELAY_TRUSTED_PROXIES": "-1"},
        "FORMRELAY_TRUSTED_PROXIES must not be negative, not '-1'",
    ),
    (
        {"FORMRELAY_RETRY_BASE_SECONDS": "-0.5"},
        "FORMRELAY_RETRY_BASE_SECONDS must not be negative, not '-0.5'",
    ),
    ({"FORMRELAY_MAX_BODY_BYTES": "0"}, "FORMRELAY_MAX_BODY_BYTES must be at least 1"),
    (
        {"FORMRELAY_RATE_LIMIT": "lots"},
        "FORMRELAY_RATE_LIMIT must be limits such as \"10/minute;200/day\", not 'lots'",
    ),
    (
        {"FORMRELAY_RATE_LIMIT_GLOBAL": ""},
        "FORMRELAY_RATE_LIMIT_GLOBAL must be limits such as \"10/minute;200/day\", not ''",
    ),
    (
        {"FORMRELAY_TURNSTILE_VERIFY_URL": "ftp://x"},
        "FORMRELAY_TURNSTILE_VERIFY_URL must be an http(s) URL, not 'ftp://x'",
    ),
    ({"FORMRELAY_CAPTCHA_TIMEOUT": "0"}, "FORMRELAY_CAPTCHA_TIMEOUT must be more than 0"),
    (
        {"FORMRELAY_SQLITE_BUSY_TIMEOUT": "0"},
        "FORMRELAY_SQLITE_BUSY_TIMEOUT must be more than 0",
    ),
    ({"FORMRELAY_LEASE_SECONDS": "0"}, "FORMRELAY_LEASE_SECONDS must be at least 1"),
    ({"FORMRELAY_WORKER_NICE": "20"}, "FORMRELAY_WORKER_NICE must be from 0 to 19, not 20"),
    ({"FORMRELAY_WORKER_NICE": "-5"}, "FORMRELAY_WORKER_NICE must not be negative, not '-5'"),
    ({"FORMRELAY_MAIL_TIMEOUT": "0"}, "FORMRELAY_MAIL_TIMEOUT must be more than 0"),
    (
        {"MAIL_USE_TLS": "true", "MAIL_USE_SSL": "true"},
        "MAIL_USE_TLS and MAIL_USE_SSL are exclusive: set only one",
    ),
    ({**SES, "AWS_REGION": ""}, "AWS_REGION is required when MAIL_BACKEND=ses"),
    ({"MAIL_BACKEND": "smtp"}, "MAIL_DEFAULT_SENDER is required when MAIL_BACKEND=smtp"),
    (
        {"MAIL_BACKEND": "ses", "AWS_REGION": "eu-west-1"},
        "MAIL_DEFAULT_SENDER is required when MAIL_BACKEND=ses",
    ),
    (
        {"MAIL_DEFAULT_SENDER": "forms"},
        "MAIL_DEFAULT_SENDER must be one e-mail address, alone or as Name <address> "
        "(a name with a comma in double quotes), not 'forms'",
    ),
    (
        {"MAIL_DEFAULT_SENDER": "Acme, Inc <forms@example.com>"},
        "MAIL_DEFAULT_SENDER must be one e-mail address, alone or as Name <address> "
        "(a name with a comma in double quotes), not 'Acme, Inc <forms@example.com>'",
    ),
    (
        {"FORMRELAY_BASE_URL": "forms.example.org"},
        "FORMRELAY_BASE_URL must be an http(s) URL, not 'forms.example.org'",
    ),
    ({"PORT": "http"}, "PORT must be a whole number, not 'http'"),
    ({"PORT": "0"}, "PORT must be a port number from 1 to 65535, not 0"),
    ({"PORT": "65536"}, "PORT must be a port number from 1 to 65535, not 65536"),
    ({"FORMRELAY_ADMIN": "ann"}, "FORMRELAY_ADMIN must be an e-mail address, not 'ann'"),
    (
        {"FORMRELAY_REGISTRATION": "maybe"},
        "FORMRELAY_REGISTRATION must be one of open, invite, closed, not 'maybe'",
    ),
    (
        {"RATELIMIT_STORAGE_URI": "memcached://x"},
        "RATELIMIT_STORAGE_URI must start with memory://, redis:// or rediss://, "
        "not 'memcached://x'",
    ),
    (
        {"FORMRELAY_MAIL_CA_FILE": "/nonexistent/ca.pem"},
        "FORMRELAY_MAIL_CA_FILE does not name a file: '/nonexistent/ca.pem'",
    ),
]


@pytest.mark.parametrize(
    ("environ", "message"), BAD_VALUES, ids=[m.split()[0] for _, m in BAD_VALUES]
)
def test_a_bad_value_is_refused_with_a_message_naming_the_variable(tmp_path, environ, message):
    with pytest.raises(ConfigError) as refused:
        settings(tmp_path, **environ)
    assert str(refused.value) == message


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        *[("1", True), ("true", True), ("Yes", True), ("ON", True), (" true ", True)],
        *[("0", False), ("false", False), ("No", False), ("off", False), ("", False)],
    ],
)
def test_booleans_have_the_usual_spellings(tmp_path, raw, value):
    assert settings(tmp_path, MAIL_USE_TLS=raw).mail_use_tls is value


@pytest.mark.parametrize(
    ("environ", "port"),
    [
        ({}, 25),
        ({"MAIL_USE_TLS": "true"}, 587),
        ({"MAIL_USE_SSL": "true"}, 465),
        ({"MAIL_USE_TLS": "true", "MAIL_PORT": "2525"}, 2525),
    ],
)
def test_smtp_port_follows_the_tls_mode_unless_given(tmp_path, environ, port):
    smtp = {"MAIL_BACKEND": "smtp", "MAIL_DEFAULT_SENDER": "forms@example.org"}
    assert settings(tmp_path, **smtp, **environ).mail_port == port


# -- aliases and masking -------------------------------------------------------------------
def test_aws_aliases_from_dokku_guides_are_accepted(tmp_path):
    got = settings(
        tmp_path,
        **SES,
        AWS_ACCESS_KEY="AKIAALIAS",
        AWS_SECRET_KEY="alias-secret",
    )
    assert (got.aws_access_key_id, got.aws_secret_access_key) == ("AKIAALIAS", "alias-secret")


def test_the_standard_aws_name_wins_over_its_alias(tmp_path):
    got = settings(
        tmp_path,
        **SES,
        AWS_ACCESS_KEY_ID="AKIASTANDARD",
        AWS_ACCESS_KEY="AKIAALIAS",
        AWS_SECRET_ACCESS_KEY="standard-secret",
        AWS_SECRET_KEY="alias-secret",
    )
    assert (got.aws_access_key_id, got.aws_secret_access_key) == (
        "AKIASTANDARD",
        "standard-secret",
    )


def test_aws_default_region_stands_for_aws_region(tmp_path):
    environ = {k: v for k, v in SES.items() if k != "AWS_REGION"}
    assert settings(tmp_path, **environ, AWS_DEFAULT_REGION="us-east-2").aws_region == "us-east-2"


def test_masked_hides_every_secret_and_the_database_password(tmp_path):
    shown = settings(
        tmp_path,
        **SES,
        DATABASE_URL="postgres://formrelay:db-pass-123@db.example:5432/formrelay",
        SECRET_KEY="secret-key-123",
        MAIL_PASSWORD="mail-pass-123",
        AWS_SECRET_ACCESS_KEY="aws-secret-123",
    ).masked()
    assert (
        shown["DATABASE_URL"] == "postgresql+psycopg://formrelay:********@db.example:5432/formrelay"
    )
    assert shown["SECRET_KEY"] == shown["MAIL_PASSWORD"] == "********"
    assert shown["AWS_SECRET_ACCESS_KEY"] == "********"
    assert not [value for value in shown.values() if "123" in value]


# -- the real console script ---------------------------------------------------------------
def run_formrelay(tmp_path: Path, *args: str, **environ: str) -> subprocess.CompletedProcess[str]:
    """`formrelay ARGS` as a shell runs it, in tmp_path, with only these formrelay settings."""
    env = {**os.environ, "FORMRELAY_INSTANCE_PATH": str(tmp_path / "instance"), **environ}
    return subprocess.run(
        [FORMRELAY, *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )


def printed_settings(stdout: str) -> dict[str, str]:
    """`config check`'s lines as {variable: value}; its last line must say the check passed."""
    *lines, last = stdout.splitlines()
    assert last == "configuration OK"
    return dict(re.fullmatch(r"(\S+) *(.*)", line).groups() for line in lines)


@pytest.mark.parametrize("command", [["config", "check"], ["worker"], ["--help"]])
def test_a_bad_setting_stops_the_command_with_one_line_and_status_2(tmp_path, command):
    result = run_formrelay(tmp_path, *command, MAIL_BACKEND="carrier-pigeon")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        "formrelay: configuration error: "
        "MAIL_BACKEND must be one of console, smtp, ses, not 'carrier-pigeon'\n"
    )


def test_config_check_creates_no_file_or_folder(tmp_path):
    result = run_formrelay(tmp_path, "config", "check")
    assert result.returncode == 0, result.stderr
    assert printed_settings(result.stdout)["SECRET_KEY"] == (
        f"(unset: development key in {tmp_path / 'instance' / 'secret_key'})"
    )
    assert list(tmp_path.iterdir()) == []


def test_config_check_prints_every_effective_setting_with_secrets_masked(tmp_path):
    result = run_formrelay(
        tmp_path,
        "config",
        "check",
        DATABASE_URL="postgres://formrelay:db-pass-123@db.example:5432/formrelay",
        SECRET_KEY="secret-key-123",
        MAIL_BACKEND="ses",
        AWS_REGION="eu-west-1",
        MAIL_DEFAULT_SENDER="forms@example.org",
        AWS_ACCESS_KEY="AKIAALIAS",
        AWS_SECRET_KEY="aws-secret-123",
        MAIL_PASSWORD="mail-pass-123",
    )
    assert (result.returncode, result.stderr) == (0, "")
    shown = printed_settings(result.stdout)
    assert list(shown) == list(FIELD_TO_VAR.values())
    assert (
        shown["DATABASE_URL"] == "postgresql+psycopg://formrelay:********@db.example:5432/formrelay"
    )
    assert shown["SECRET_KEY"] == shown["MAIL_PASSWORD"] == "********"
    assert shown["AWS_SECRET_ACCESS_KEY"] == "********"
    assert (shown["AWS_ACCESS_KEY_ID"], shown["MAIL_BACKEND"]) == ("AKIAALIAS", "ses")
    assert "123" not in result.stdout


def test_the_command_reads_dotenv_from_the_working_directory_and_the_environment_wins(tmp_path):
    (tmp_path / ".env").write_text(
        "FORMRELAY_MAIL_SUBJECT_PREFIX=[from .env]\nMAIL_SERVER=dotenv.example\n"
    )
    result = run_formrelay(tmp_path, "config", "check", MAIL_SERVER="environment.example")
    assert result.returncode == 0, result.stderr
    shown = printed_settings(result.stdout)
    assert shown["FORMRELAY_MAIL_SUBJECT_PREFIX"] == "[from .env]"
    assert shown["MAIL_SERVER"] == "environment.example"


def test_the_wsgi_module_reads_dotenv_from_the_working_directory(tmp_path):
    (tmp_path / ".env").write_text("FORMRELAY_MAIL_SUBJECT_PREFIX=[from .env]\n")
    # A script file, as under gunicorn: python-dotenv treats `python -c` as interactive.
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from formrelay.wsgi import app\n"
        "from formrelay.settings import get_settings\n"
        "print(get_settings(app).mail_subject_prefix)\n"
    )
    env = {**os.environ, "FORMRELAY_INSTANCE_PATH": str(tmp_path / "instance")}
    result = subprocess.run(
        [sys.executable, str(probe)], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert (result.returncode, result.stdout) == (0, "[from .env]\n")


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"FORMRELAY_STORAGE": "ftp"}, "FORMRELAY_STORAGE must be one of local, s3, not 'ftp'"),
        (
            {"FORMRELAY_STORAGE": "s3", "AWS_REGION": "eu-west-1"},
            "FORMRELAY_S3_BUCKET is required when FORMRELAY_STORAGE=s3",
        ),
        (
            {"FORMRELAY_STORAGE": "s3", "FORMRELAY_S3_BUCKET": "b"},
            "AWS_REGION is required when FORMRELAY_STORAGE=s3",
        ),
        (
            {"FORMRELAY_S3_SSE": "none"},
            "FORMRELAY_S3_SSE must be one of AES256, aws:kms, not 'none'",
        ),
        (
            {"FORMRELAY_SENDFILE": "nginx"},
            "FORMRELAY_SENDFILE must be empty, x-sendfile or x-accel-redirect, not 'nginx'",
        ),
        (
            {"FORMRELAY_MAX_UPLOAD_BODY_BYTES": "1000"},
            "FORMRELAY_MAX_UPLOAD_BODY_BYTES must be at least FORMRELAY_MAX_BODY_BYTES (102400)",
        ),
        ({"FORMRELAY_DOWNLOAD_LINK_DAYS": "0"}, "FORMRELAY_DOWNLOAD_LINK_DAYS must be at least 1"),
    ],
)
def test_bad_upload_settings_stop_the_start_naming_the_variable(environ, message):
    with pytest.raises(ConfigError) as caught:
        load_settings(environ)
    assert str(caught.value) == message


def test_the_upload_folder_defaults_under_the_instance_and_can_be_named(tmp_path):
    assert (
        load_settings({"FORMRELAY_INSTANCE_PATH": str(tmp_path)}).upload_path
        == tmp_path / "uploads"
    )
    named = load_settings({"FORMRELAY_UPLOAD_PATH": str(tmp_path / "files")})
    assert named.upload_path == tmp_path / "files"
