"""One typed Settings object, built once from the environment and validated at start."""

from __future__ import annotations

import dataclasses
import math
import os
import re
import secrets
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import getaddresses
from pathlib import Path
from urllib.parse import urlsplit

from flask import Flask, current_app
from sqlalchemy.engine import make_url

from .services.addresses import normalize_email
from .services.errors import DomainError

ENVIRONMENTS = ("development", "production")
REGISTRATION_MODES = ("open", "invite", "closed")
COMMITTERS = ("process", "thread")
RATELIMIT_SCHEMES = ("memory://", "redis://", "rediss://", "redis+sentinel://")
_EXTENSION = "formrelay.settings"
DERIVED = "derived"  # metadata of a Settings field that no variable sets


class ConfigError(Exception):
    """A setting is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    env: str = "development"
    instance_path: Path = Path("instance")
    database_url: str = ""
    # On SQLite, how long a write waits for another's lock (the committer's batches, say)
    # before the database counts as unavailable (a 503).
    sqlite_busy_timeout: float = 30.0
    secret_key: str = field(default="", repr=False)
    # Unset: the local address, http://127.0.0.1:<port> (filled in by load_settings);
    # `formrelay serve` replaces that by the address it listens on (Settings.serving_at).
    base_url: str = ""
    port: int = 5000
    admin_email: str = ""
    # Who may create an account: anyone (open), those the admin invites (invite), nobody.
    registration: str = "invite"
    # Flask-Limiter's storage: memory:// (one process) or redis://... (shared).
    ratelimit_storage_uri: str = "memory://"

    mail_backend: str = "console"
    mail_default_sender: str = "formrelay@localhost"
    mail_subject_prefix: str = "[formrelay]"
    mail_server: str = "localhost"
    mail_port: int = 25
    mail_use_tls: bool = False
    mail_use_ssl: bool = False
    mail_username: str = ""
    mail_password: str = field(default="", repr=False)
    mail_timeout: float = 30.0
    mail_ca_file: str = ""

    aws_region: str = ""
    aws_access_key_id: str = ""
    aws_secret_access_key: str = field(default="", repr=False)
    aws_endpoint_url: str = ""
    ses_configuration_set: str = ""
    # SNS topics whose notifications POST /hooks/ses accepts (comma-separated ARNs).
    sns_topic_arns: str = ""
    sns_username: str = ""
    sns_password: str = field(default="", repr=False)
    # How often a worker asks SES for its MaxSendRate again.
    ses_rate_refresh_seconds: float = 300.0
    # A send SES refused for the daily quota waits this long before it is tried again.
    ses_quota_retry_seconds: float = 1800.0

    trusted_proxies: int = 0

    # Spam and abuse (docs/spam.md). Limits in Flask-Limiter's notation, per client address.
    rate_limit: str = "10/minute;200/day"  # per form, for forms that set none
    rate_limit_global: str = "60/minute;2000/day"  # over all forms together
    turnstile_verify_url: str = "https://challenges.cloudflare.com/turnstile/v0/siteverify"
    hcaptcha_verify_url: str = "https://api.hcaptcha.com/siteverify"
    recaptcha_verify_url: str = "https://www.google.com/recaptcha/api/siteverify"
    captcha_timeout: float = 3.0
    akismet_api_key: str = field(default="", repr=False)
    akismet_url: str = "https://rest.akismet.com/1.1/comment-check"
    # Notifications an hour (0: no ceiling): per form unless the form sets its own, and in all.
    notify_limit_per_form: int = 500
    notify_limit_global: int = 5000

    max_body_bytes: int = 100 * 1024
    max_fields: int = 200

    # File uploads (docs/uploads.md). The body ceiling of a form that takes files; each
    # form's own limits are lower.
    max_upload_body_bytes: int = 105 * 1024 * 1024
    storage: str = "local"
    # Unset: <instance>/uploads (upload_path, filled in by load_settings).
    upload_dir: str = ""
    s3_bucket: str = ""
    s3_prefix: str = "uploads/"
    s3_sse: str = "AES256"
    download_link_days: int = 7
    # "" (streamed by formrelay), "x-sendfile" (Apache, lighttpd) or "x-accel-redirect"
    # (nginx, which maps sendfile_prefix to the upload folder with an internal location).
    sendfile: str = ""
    sendfile_prefix: str = "/_uploads/"
    attach_max_bytes: int = 10 * 1024 * 1024
    attach_total_bytes: int = 25 * 1024 * 1024
    retention_days: int = 0
    # Keep the search index at ingest (off only to measure ingest without it).
    search_index: bool = True
    # Who stores the submissions web processes accept: one process for the machine
    # (formrelay.committer), or a thread in each web process.
    committer: str = "process"

    worker_batch_size: int = 20
    send_rate: float = 0.0
    worker_poll_seconds: float = 1.0
    lease_seconds: int = 300
    worker_heartbeat_seconds: float = 5.0
    worker_grace_seconds: float = 15.0
    worker_nice: int = 10
    ready_max_delay_seconds: float = 300.0
    retry_base_seconds: float = 30.0
    retry_max_delay_seconds: float = 6 * 3600.0
    max_attempts: int = 13

    # Not a setting: whether FORMRELAY_BASE_URL gave base_url, rather than the local address.
    base_url_is_set: bool = field(default=False, metadata={DERIVED: True})
    # Not a setting: the folder local storage keeps uploads in (FORMRELAY_UPLOAD_PATH, made
    # absolute, or <instance>/uploads).
    upload_path: Path = field(default=Path("uploads"), metadata={DERIVED: True})

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def sns_topics(self) -> frozenset[str]:
        """The allowed SNS topic ARNs (FORMRELAY_SNS_TOPIC_ARNS, split)."""
        return frozenset(a for a in self.sns_topic_arns.replace(",", " ").split() if a)

    def serving_at(self, host: str, port: int) -> Settings:
        """These settings for a server listening on `host`:`port`: unless FORMRELAY_BASE_URL
        is set, the base URL is that address (127.0.0.1 for a server on every interface)."""
        if self.base_url_is_set:
            return dataclasses.replace(self, port=port)
        return dataclasses.replace(self, port=port, base_url=local_url(host, port))

    def masked(self) -> dict[str, str]:
        """Every effective setting by its environment name, secrets masked."""
        out: dict[str, str] = {}
        for f in dataclasses.fields(self):
            var = FIELD_TO_VAR.get(f.name)
            if var is None:
                continue
            value = getattr(self, f.name)
            if f.name == "secret_key" and not value:
                text = f"(unset: development key in {self.instance_path / 'secret_key'})"
            elif f.name in SECRET_FIELDS:
                text = "********" if value else "(unset)"
            elif f.name == "upload_dir" and not value:
                text = f"(unset: {self.upload_path})"
            elif f.name == "database_url":
                text = _mask_url_password(value)
            else:
                text = str(value).lower() if isinstance(value, bool) else str(value)
            out[var] = text
        return out


# Environment variable for each field. Names the ecosystem already uses stay as they are
# (DATABASE_URL, SECRET_KEY, Flask-Mail's MAIL_*, boto3's AWS_*); ours carry FORMRELAY_.
FIELD_TO_VAR = {
    "env": "FORMRELAY_ENV",
    "instance_path": "FORMRELAY_INSTANCE_PATH",
    "database_url": "DATABASE_URL",
    "sqlite_busy_timeout": "FORMRELAY_SQLITE_BUSY_TIMEOUT",
    "secret_key": "SECRET_KEY",
    "base_url": "FORMRELAY_BASE_URL",
    "port": "PORT",
    "admin_email": "FORMRELAY_ADMIN",
    "registration": "FORMRELAY_REGISTRATION",
    "ratelimit_storage_uri": "RATELIMIT_STORAGE_URI",
    "mail_backend": "MAIL_BACKEND",
    "mail_default_sender": "MAIL_DEFAULT_SENDER",
    "mail_subject_prefix": "FORMRELAY_MAIL_SUBJECT_PREFIX",
    "mail_server": "MAIL_SERVER",
    "mail_port": "MAIL_PORT",
    "mail_use_tls": "MAIL_USE_TLS",
    "mail_use_ssl": "MAIL_USE_SSL",
    "mail_username": "MAIL_USERNAME",
    "mail_password": "MAIL_PASSWORD",
    "mail_timeout": "FORMRELAY_MAIL_TIMEOUT",
    "mail_ca_file": "FORMRELAY_MAIL_CA_FILE",
    "aws_region": "AWS_REGION",
    "aws_access_key_id": "AWS_ACCESS_KEY_ID",
    "aws_secret_access_key": "AWS_SECRET_ACCESS_KEY",
    "aws_endpoint_url": "AWS_ENDPOINT_URL",
    "ses_configuration_set": "SES_CONFIGURATION_SET",
    "sns_topic_arns": "FORMRELAY_SNS_TOPIC_ARNS",
    "sns_username": "FORMRELAY_SNS_USERNAME",
    "sns_password": "FORMRELAY_SNS_PASSWORD",
    "ses_rate_refresh_seconds": "FORMRELAY_SES_RATE_REFRESH_SECONDS",
    "ses_quota_retry_seconds": "FORMRELAY_SES_QUOTA_RETRY_SECONDS",
    "trusted_proxies": "FORMRELAY_TRUSTED_PROXIES",
    "rate_limit": "FORMRELAY_RATE_LIMIT",
    "rate_limit_global": "FORMRELAY_RATE_LIMIT_GLOBAL",
    "turnstile_verify_url": "FORMRELAY_TURNSTILE_VERIFY_URL",
    "hcaptcha_verify_url": "FORMRELAY_HCAPTCHA_VERIFY_URL",
    "recaptcha_verify_url": "FORMRELAY_RECAPTCHA_VERIFY_URL",
    "captcha_timeout": "FORMRELAY_CAPTCHA_TIMEOUT",
    "akismet_api_key": "AKISMET_API_KEY",
    "akismet_url": "FORMRELAY_AKISMET_URL",
    "notify_limit_per_form": "FORMRELAY_NOTIFY_LIMIT_PER_FORM",
    "notify_limit_global": "FORMRELAY_NOTIFY_LIMIT_GLOBAL",
    "max_body_bytes": "FORMRELAY_MAX_BODY_BYTES",
    "max_fields": "FORMRELAY_MAX_FIELDS",
    "max_upload_body_bytes": "FORMRELAY_MAX_UPLOAD_BODY_BYTES",
    "storage": "FORMRELAY_STORAGE",
    "upload_dir": "FORMRELAY_UPLOAD_PATH",
    "s3_bucket": "FORMRELAY_S3_BUCKET",
    "s3_prefix": "FORMRELAY_S3_PREFIX",
    "s3_sse": "FORMRELAY_S3_SSE",
    "download_link_days": "FORMRELAY_DOWNLOAD_LINK_DAYS",
    "sendfile": "FORMRELAY_SENDFILE",
    "sendfile_prefix": "FORMRELAY_SENDFILE_PREFIX",
    "attach_max_bytes": "FORMRELAY_ATTACH_MAX_BYTES",
    "attach_total_bytes": "FORMRELAY_ATTACH_TOTAL_BYTES",
    "retention_days": "FORMRELAY_RETENTION_DAYS",
    "search_index": "FORMRELAY_SEARCH_INDEX",
    "committer": "FORMRELAY_COMMITTER",
    "worker_batch_size": "FORMRELAY_WORKER_BATCH_SIZE",
    "send_rate": "FORMRELAY_SEND_RATE",
    "worker_poll_seconds": "FORMRELAY_WORKER_POLL_SECONDS",
    "lease_seconds": "FORMRELAY_LEASE_SECONDS",
    "worker_heartbeat_seconds": "FORMRELAY_WORKER_HEARTBEAT_SECONDS",
    "worker_grace_seconds": "FORMRELAY_WORKER_GRACE_SECONDS",
    "worker_nice": "FORMRELAY_WORKER_NICE",
    "ready_max_delay_seconds": "FORMRELAY_READY_MAX_DELAY_SECONDS",
    "retry_base_seconds": "FORMRELAY_RETRY_BASE_SECONDS",
    "retry_max_delay_seconds": "FORMRELAY_RETRY_MAX_DELAY_SECONDS",
    "max_attempts": "FORMRELAY_MAX_ATTEMPTS",
}
# Accepted in place of the standard name when that is unset (many Dokku guides use them).
ALIASES = {
    "AWS_ACCESS_KEY_ID": ("AWS_ACCESS_KEY",),
    "AWS_SECRET_ACCESS_KEY": ("AWS_SECRET_KEY",),
    "AWS_REGION": ("AWS_DEFAULT_REGION",),
}
SECRET_FIELDS = {
    "secret_key",
    "mail_password",
    "aws_secret_access_key",
    "sns_password",
    "akismet_api_key",
}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def load_settings(
    environ: Mapping[str, str] | None = None, overrides: Mapping[str, object] | None = None
) -> Settings:
    """Build Settings from environment variables (and test overrides by field name).

    Raises ConfigError naming the variable when a value is missing or malformed.
    """
    env = os.environ if environ is None else environ
    defaults = Settings()
    values: dict[str, object] = {}
    for f in dataclasses.fields(Settings):
        if f.metadata.get(DERIVED):
            continue
        var = FIELD_TO_VAR[f.name]
        raw = env.get(var)
        if raw is None:
            raw = next((env[a] for a in ALIASES.get(var, ()) if a in env), None)
        if raw is None:
            continue
        values[f.name] = _convert(var, raw.strip(), type(getattr(defaults, f.name)))
    values.update(overrides or {})
    settings = Settings(**values)  # type: ignore[arg-type]
    return _finish(settings, given=set(values))


def _convert(var: str, raw: str, kind: type) -> object:
    if kind is bool:
        low = raw.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ConfigError(f"{var} must be true or false, not {raw!r}")
    if kind in (int, float):
        try:
            number = kind(raw)
        except ValueError:
            what = "a whole number" if kind is int else "a number"
            raise ConfigError(f"{var} must be {what}, not {raw!r}") from None
        if not math.isfinite(number):  # float() accepts "nan" and "inf"
            raise ConfigError(f"{var} must be a number, not {raw!r}")
        if number < 0:
            raise ConfigError(f"{var} must not be negative, not {raw!r}")
        return number
    if issubclass(kind, Path):
        return Path(raw)
    return raw


def _finish(s: Settings, *, given: set[str]) -> Settings:
    """Validate cross-field rules and fill derived defaults."""
    if s.env not in ENVIRONMENTS:
        raise ConfigError(f"FORMRELAY_ENV must be one of {', '.join(ENVIRONMENTS)}, not {s.env!r}")
    instance = s.instance_path.resolve()
    changes: dict[str, object] = {"instance_path": instance}

    changes["database_url"] = normalize_database_url(s.database_url, instance)

    if not s.secret_key and s.is_production:
        raise ConfigError("SECRET_KEY is required when FORMRELAY_ENV=production")

    if not 1 <= s.port <= 65535:
        raise ConfigError(f"PORT must be a port number from 1 to 65535, not {s.port}")
    if s.base_url:
        parts = urlsplit(s.base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"FORMRELAY_BASE_URL must be an http(s) URL, not {s.base_url!r}")
        changes["base_url"] = s.base_url.rstrip("/")
        changes["base_url_is_set"] = True
    else:
        changes["base_url"] = local_url("127.0.0.1", s.port)
        changes["base_url_is_set"] = False

    if s.registration not in REGISTRATION_MODES:
        raise ConfigError(
            f"FORMRELAY_REGISTRATION must be one of {', '.join(REGISTRATION_MODES)}, "
            f"not {s.registration!r}"
        )
    if s.committer not in COMMITTERS:
        raise ConfigError(
            f"FORMRELAY_COMMITTER must be one of {', '.join(COMMITTERS)}, not {s.committer!r}"
        )
    if not s.ratelimit_storage_uri.startswith(RATELIMIT_SCHEMES):
        raise ConfigError(
            "RATELIMIT_STORAGE_URI must start with memory://, redis:// or rediss://, "
            f"not {s.ratelimit_storage_uri!r}"
        )

    for name in ("rate_limit", "rate_limit_global"):
        if not valid_rate_limit(getattr(s, name)):
            raise ConfigError(
                f'{FIELD_TO_VAR[name]} must be limits such as "10/minute;200/day", '
                f"not {getattr(s, name)!r}"
            )
    for name in (
        "turnstile_verify_url",
        "hcaptcha_verify_url",
        "recaptcha_verify_url",
        "akismet_url",
    ):
        parts = urlsplit(getattr(s, name))
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(
                f"{FIELD_TO_VAR[name]} must be an http(s) URL, not {getattr(s, name)!r}"
            )
    if s.captcha_timeout <= 0:
        raise ConfigError("FORMRELAY_CAPTCHA_TIMEOUT must be more than 0")
    if s.sqlite_busy_timeout <= 0:
        raise ConfigError("FORMRELAY_SQLITE_BUSY_TIMEOUT must be more than 0")

    if s.admin_email:
        try:
            changes["admin_email"] = normalize_email(s.admin_email, "FORMRELAY_ADMIN").lower()
        except DomainError:
            raise ConfigError(
                f"FORMRELAY_ADMIN must be an e-mail address, not {s.admin_email!r}"
            ) from None

    from .delivery import backend_names  # the registry imports Settings for its types

    mail_backends = backend_names("email")
    if s.mail_backend not in mail_backends:
        raise ConfigError(
            f"MAIL_BACKEND must be one of {', '.join(mail_backends)}, not {s.mail_backend!r}"
        )
    if s.mail_use_tls and s.mail_use_ssl:
        raise ConfigError("MAIL_USE_TLS and MAIL_USE_SSL are exclusive: set only one")
    if s.mail_backend == "smtp" and "mail_port" not in given:
        changes["mail_port"] = 465 if s.mail_use_ssl else 587 if s.mail_use_tls else 25
    if s.mail_ca_file and not Path(s.mail_ca_file).is_file():
        raise ConfigError(f"FORMRELAY_MAIL_CA_FILE does not name a file: {s.mail_ca_file!r}")
    if s.mail_backend == "ses" and not s.aws_region:
        raise ConfigError("AWS_REGION is required when MAIL_BACKEND=ses")
    if s.mail_backend != "console" and "mail_default_sender" not in given:
        raise ConfigError(f"MAIL_DEFAULT_SENDER is required when MAIL_BACKEND={s.mail_backend}")
    senders = getaddresses([s.mail_default_sender])
    if len(senders) != 1 or "@" not in senders[0][1] or not senders[0][1].isascii():
        raise ConfigError(
            "MAIL_DEFAULT_SENDER must be one e-mail address, alone or as Name <address> "
            f"(a name with a comma in double quotes), not {s.mail_default_sender!r}"
        )
    # A zero lease lets a second worker reclaim a row while the first is still sending it.
    for name in (
        "max_body_bytes",
        "max_fields",
        "worker_batch_size",
        "max_attempts",
        "lease_seconds",
    ):
        if getattr(s, name) < 1:
            raise ConfigError(f"{FIELD_TO_VAR[name]} must be at least 1")
    if s.worker_nice > 19:
        raise ConfigError(f"FORMRELAY_WORKER_NICE must be from 0 to 19, not {s.worker_nice}")
    if s.worker_heartbeat_seconds <= 0:
        raise ConfigError("FORMRELAY_WORKER_HEARTBEAT_SECONDS must be more than 0")
    # A worker is taken for dead after the grace period without a beat, and its leases are
    # renewed only by its beats: both must leave room for a beat or two that comes late.
    if s.worker_grace_seconds < 2 * s.worker_heartbeat_seconds:
        raise ConfigError(
            "FORMRELAY_WORKER_GRACE_SECONDS must be at least twice "
            f"FORMRELAY_WORKER_HEARTBEAT_SECONDS ({s.worker_heartbeat_seconds:g})"
        )
    if s.lease_seconds < 2 * s.worker_heartbeat_seconds:
        raise ConfigError(
            "FORMRELAY_LEASE_SECONDS must be at least twice "
            f"FORMRELAY_WORKER_HEARTBEAT_SECONDS ({s.worker_heartbeat_seconds:g})"
        )
    if bool(s.sns_username) != bool(s.sns_password):
        raise ConfigError(
            "FORMRELAY_SNS_USERNAME and FORMRELAY_SNS_PASSWORD go together: set both or neither"
        )
    for arn in sorted(s.sns_topics):
        if not re.fullmatch(r"arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_.-]{1,256}", arn):
            raise ConfigError(f"FORMRELAY_SNS_TOPIC_ARNS must list SNS topic ARNs, not {arn!r}")
    if s.ses_rate_refresh_seconds < 1:
        raise ConfigError("FORMRELAY_SES_RATE_REFRESH_SECONDS must be at least 1")
    changes.update(_upload_settings(s, instance))
    if s.mail_timeout <= 0:  # smtplib takes 0 for a non-blocking socket: every send would fail
        raise ConfigError("FORMRELAY_MAIL_TIMEOUT must be more than 0")
    return dataclasses.replace(s, **changes)  # type: ignore[arg-type]


def valid_rate_limit(text: str) -> bool:
    """Whether `text` is one or more limits in Flask-Limiter's notation ("5/minute;100/day")."""
    from limits import parse_many

    try:
        return bool(text.strip()) and bool(parse_many(text))
    except ValueError:
        return False


SENDFILE_MODES = ("", "x-sendfile", "x-accel-redirect")
S3_SSE_MODES = ("AES256", "aws:kms")
# SES refuses a message over 40 MB, counted after base64 (4/3 of the raw bytes).
SES_MAX_ATTACHED_BYTES = 40 * 1024 * 1024 * 3 // 4 - 1024 * 1024


def _upload_settings(s: Settings, instance: Path) -> dict[str, object]:
    """Validate the upload settings; returns the derived values (the upload folder)."""
    from .storage import storage_names  # the registry imports Settings for its types

    names = storage_names()
    if s.storage not in names:
        raise ConfigError(f"FORMRELAY_STORAGE must be one of {', '.join(names)}, not {s.storage!r}")
    if s.storage == "s3" and not s.s3_bucket:
        raise ConfigError("FORMRELAY_S3_BUCKET is required when FORMRELAY_STORAGE=s3")
    if s.storage == "s3" and not s.aws_region:
        raise ConfigError("AWS_REGION is required when FORMRELAY_STORAGE=s3")
    if s.s3_sse not in S3_SSE_MODES:
        raise ConfigError(
            f"FORMRELAY_S3_SSE must be one of {', '.join(S3_SSE_MODES)}, not {s.s3_sse!r}"
        )
    if s.sendfile not in SENDFILE_MODES:
        raise ConfigError(
            f"FORMRELAY_SENDFILE must be empty, x-sendfile or x-accel-redirect, not {s.sendfile!r}"
        )
    if not s.sendfile_prefix.startswith("/"):
        raise ConfigError(
            f"FORMRELAY_SENDFILE_PREFIX must be a path starting with /, not {s.sendfile_prefix!r}"
        )
    if s.max_upload_body_bytes < s.max_body_bytes:
        raise ConfigError(
            "FORMRELAY_MAX_UPLOAD_BODY_BYTES must be at least FORMRELAY_MAX_BODY_BYTES "
            f"({s.max_body_bytes})"
        )
    if s.download_link_days < 1:
        raise ConfigError("FORMRELAY_DOWNLOAD_LINK_DAYS must be at least 1")
    path = Path(s.upload_dir) if s.upload_dir else instance / "uploads"
    return {"upload_path": path.resolve()}


def local_url(host: str, port: int) -> str:
    """The URL of a server on this machine listening on `host`:`port`."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


def prepare_instance(settings: Settings) -> Settings:
    """Make what running needs on disk: the SQLite database's folder and, in development
    without SECRET_KEY, the generated key kept under the instance folder.

    Loading settings stays free of side effects (`formrelay config check` writes nothing);
    the app factory calls this. Raises ConfigError when the folder cannot be made.
    """
    # The default database lives under the instance folder; a named one where it says.
    default = settings.database_url == normalize_database_url("", settings.instance_path)
    _ensure_sqlite_folder(
        settings.database_url, "FORMRELAY_INSTANCE_PATH" if default else "DATABASE_URL"
    )
    if settings.secret_key:
        return settings
    return dataclasses.replace(settings, secret_key=_development_secret_key(settings.instance_path))


def init_app(app: Flask, settings: Settings) -> None:
    """Bind the settings to the app, where get_settings() finds them."""
    app.extensions[_EXTENSION] = settings


def get_settings(app: Flask | None = None) -> Settings:
    """The Settings of `app`, or of the current app."""
    found: Settings = (app or current_app).extensions[_EXTENSION]
    return found


def normalize_database_url(url: str, instance: Path) -> str:
    """SQLAlchemy URL for DATABASE_URL; accepts Heroku/Dokku's postgres:// form."""
    if not url:
        return f"sqlite:///{instance / 'formrelay.sqlite3'}"
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme in ("postgres", "postgresql"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    if scheme in ("sqlite", "postgresql+psycopg"):
        return url
    raise ConfigError(
        "DATABASE_URL must start with postgres://, postgresql:// or sqlite:///, "
        f"not {_mask_url_password(url)!r}"
    )


def _ensure_sqlite_folder(url: str, var: str) -> None:
    """SQLite creates its file but not the folder: make it (the default is under instance/)."""
    path = make_url(url).database if url.startswith("sqlite") else None
    if not path or path == ":memory:":
        return
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"{var} names a folder for the SQLite database that cannot be created: {exc}"
        ) from None


def _development_secret_key(instance: Path) -> str:
    """Generate the development key once, kept under instance/ so sessions survive restarts.

    Raises ConfigError when the instance folder cannot hold it.
    """
    path = instance / "secret_key"
    try:
        if path.exists():
            return path.read_text().strip()
        instance.mkdir(parents=True, exist_ok=True)
        # Written aside (mkstemp: mode 0600) and linked into place, so that a process starting
        # at the same moment (a web server's workers) never reads a half-written key.
        fd, aside = tempfile.mkstemp(dir=instance, prefix=".secret_key.")
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32) + "\n")
            os.link(aside, path)
        except FileExistsError:
            pass  # another process won the race: use its key
        finally:
            os.unlink(aside)
        return path.read_text().strip()
    except OSError as exc:
        raise ConfigError(
            "SECRET_KEY is unset and the development key cannot be kept under "
            f"FORMRELAY_INSTANCE_PATH ({instance}): {exc.strerror or exc}"
        ) from None


def _mask_url_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":********@", 1)
    return url
