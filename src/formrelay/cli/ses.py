"""`formrelay ses` (set-up and status of Amazon SES) and `formrelay suppress` (the list)."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

import click
from flask.cli import with_appcontext

from ..extensions import db
from ..models import utcnow
from ..services import suppressions
from ..services.errors import DomainError
from ..settings import Settings, get_settings
from .common import _fail, _session, _writing

if TYPE_CHECKING:
    from ..delivery.ses_account import SetupReport

# boto3 is imported by the commands that use it: `formrelay --help` should not load it.

DEFAULT_CONFIGURATION_SET = "formrelay"
SES_TIMEOUT_SECONDS = 10.0
DOMAIN = re.compile(r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")
TOPIC = re.compile(r"arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_.-]{1,256}")


# -- Amazon SES --------------------------------------------------------------------------------
@click.group("ses")
def ses_group() -> None:
    """Set up and watch Amazon SES (see docs/ses.md)."""


def _client(settings: Settings) -> Any:
    from ..delivery.ses import make_client

    if not settings.aws_region:
        raise click.ClickException("AWS_REGION is not set: name the SES region (eu-west-1, ...)")
    return make_client(settings, timeout=SES_TIMEOUT_SECONDS)


def _account_id(settings: Settings) -> str:
    """The AWS account of these credentials (STS GetCallerIdentity), for the policy's ARNs."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    from ..delivery.ses import credentials

    session = boto3.session.Session()
    sts = session.client("sts", region_name=settings.aws_region, **credentials(settings))
    try:
        return str(sts.get_caller_identity()["Account"])
    except (ClientError, BotoCoreError) as exc:
        raise click.ClickException(
            f"cannot tell the AWS account id (STS GetCallerIdentity: {exc}); "
            "give it with --account-id"
        ) from None
    finally:
        sts.close()


def _domain(value: str, option: str) -> str:
    domain = value.strip().lower().rstrip(".")
    if not DOMAIN.fullmatch(domain):
        raise click.BadParameter(f"{value!r} is not a domain name", param_hint=option)
    return domain


@ses_group.command("setup")
@click.option("--domain", required=True, help="The domain formrelay sends from (example.com).")
@click.option(
    "--from",
    "from_address",
    help="The sender address, at that domain (default: MAIL_DEFAULT_SENDER's).",
)
@click.option(
    "--mail-from",
    help="A subdomain for bounces (bounce.example.com): SPF then aligns for DMARC.",
)
@click.option(
    "--events-topic",
    metavar="ARN",
    help="The SNS topic for Bounce, Complaint and Delivery events (its subscription: "
    "https://YOUR-HOST/hooks/ses).",
)
@click.option(
    "--configuration-set",
    help=f"Default: SES_CONFIGURATION_SET, else {DEFAULT_CONFIGURATION_SET}.",
)
@click.option("--account-id", help="The AWS account id, if STS cannot be asked.")
@with_appcontext
def ses_setup(
    domain: str,
    from_address: str | None,
    mail_from: str | None,
    events_topic: str | None,
    configuration_set: str | None,
    account_id: str | None,
) -> None:
    """Create the domain's SES identity with Easy DKIM, its configuration set and event
    destination; print the DNS records to add and the IAM policy to use.

    Run it with credentials that may manage SES (not formrelay's own, which the printed
    policy limits to sending). Running it again changes nothing that is done and shows
    what is still pending."""
    from ..delivery.ses_account import SESError, set_up_domain

    settings = get_settings()
    domain = _domain(domain, "--domain")
    if mail_from is not None:
        mail_from = _domain(mail_from, "--mail-from")
        if not mail_from.endswith(f".{domain}"):
            raise click.BadParameter(f"must be a subdomain of {domain}", param_hint="--mail-from")
    sender = from_address or settings.mail_default_sender
    if from_address is not None and not from_address.lower().endswith(f"@{domain}"):
        raise click.BadParameter(f"must be an address at {domain}", param_hint="--from")
    if events_topic is not None and not TOPIC.fullmatch(events_topic):
        raise click.BadParameter("not an SNS topic ARN", param_hint="--events-topic")
    name = configuration_set or settings.ses_configuration_set or DEFAULT_CONFIGURATION_SET
    client = _client(settings)
    try:
        report = set_up_domain(
            client,
            domain=domain,
            region=settings.aws_region,
            account_id=account_id or _account_id(settings),
            configuration_set=name,
            mail_from=mail_from,
            events_topic=events_topic,
        )
    except SESError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        client.close()
    _print_setup(report, sender, settings)


def _print_setup(r: SetupReport, sender: str, settings: Settings) -> None:
    echo = click.echo
    state = "created" if r.identity_created else "exists"
    verified = "verified" if r.verified else "not verified yet"
    echo(f"Domain identity {r.domain} ({r.region}): {state}, {verified}, DKIM {r.dkim_status}.")
    echo("")
    echo(f"1. DKIM: add these {len(r.dkim)} CNAME records to {r.domain}'s DNS. SES signs each")
    echo("   message with a key it publishes under them; receivers check the signature.")
    echo("")
    width = max([len(d.name) for d in r.dkim] + [4])
    echo(f"   {'Name'.ljust(width)}  Type   Value")
    for d in r.dkim:
        echo(f"   {d.name.ljust(width)}  {d.type.ljust(5)}  {d.value}")
    echo("")
    echo("   As zone-file lines:")
    for d in r.dkim:
        echo(f"   {d.zone_line()}")
    echo("")
    if r.mail_from:
        echo(f"2. MAIL FROM {r.mail_from} ({r.mail_from_status}): bounces return to SES")
        echo("   through it, and SPF passes for your own domain (DMARC alignment):")
    else:
        echo("2. SPF: without --mail-from, SES sends from amazonses.com, which passes SPF but")
        echo("   does not align with your domain for DMARC; DKIM alone aligns. For both, run")
        echo(f"   again with --mail-from bounce.{r.domain} and add the records it prints.")
    for d in r.mail_from_dns:
        echo(f"   {d.zone_line()}")
    echo("")
    if r.dmarc is not None:
        echo(f"3. {r.dmarc.why}:")
        echo(f"   {r.dmarc.zone_line()}")
        echo("")
    cs_state = "created" if r.configuration_set_created else "exists"
    echo(f"4. Configuration set {r.configuration_set}: {cs_state}.")
    if r.events_topic:
        echo(
            f"   Event destination {r.event_destination}: Bounce, Complaint and Delivery to "
            f"{r.events_topic}."
        )
        echo("   Subscribe https://YOUR-HOST/hooks/ses to that topic (HTTPS) and set")
        echo(f"   FORMRELAY_SNS_TOPIC_ARNS={r.events_topic}")
    if settings.ses_configuration_set != r.configuration_set:
        echo(f"   Set SES_CONFIGURATION_SET={r.configuration_set} so every message carries it.")
    if sender.rpartition("@")[2].rstrip(">").lower() != r.domain:
        echo(f"   Set MAIL_DEFAULT_SENDER to an address at {r.domain} (forms@{r.domain}).")
    elif sender != settings.mail_default_sender:
        echo(f"   Set MAIL_DEFAULT_SENDER={sender} to send as that address.")
    echo("")
    echo("5. IAM: give formrelay's IAM user or role this policy instead of AmazonSESFullAccess")
    echo("   (sending only as this domain, with this configuration set; reading the limits):")
    echo("")
    for line in r.policy.splitlines():
        echo(f"   {line}")
    echo("")
    if r.pending:
        echo("Still pending:")
        for item in r.pending:
            echo(f"  - {item}")
    else:
        echo(f"Nothing pending: {r.domain} is ready to send.")


@ses_group.command("status")
@click.option("--domain", help="The identity to check (default: MAIL_DEFAULT_SENDER's domain).")
@with_appcontext
def ses_status(domain: str | None) -> None:
    """Show the SES account (sandbox or production, enforcement, quota), the identity's
    verification and DKIM, the bounce and complaint rates formrelay recorded, and the
    recipients a sandboxed account cannot reach.

    Exits with status 1 when sending is paused, the identity is not verified, a rate is
    at risk, or SES cannot be asked."""
    from ..services.ses_status import ses_overview

    settings = get_settings()
    client = _client(settings)
    try:
        overview = ses_overview(
            _session(),
            settings,
            client,
            now=utcnow(),
            identity=_domain(domain, "--domain") if domain else None,
        )
    finally:
        client.close()
        db.session.rollback()
    if overview.account is not None:
        for line in overview.account.lines():
            click.echo(line)
    if overview.identity is not None:
        click.echo(overview.identity.line())
    click.echo(
        f"Configuration set: {overview.configuration_set} (on every message)"
        if overview.configuration_set
        else "Configuration set: none (SES_CONFIGURATION_SET unset: no events are published)"
    )
    click.echo(overview.events_line())
    for rate in overview.rates:
        click.echo(rate.describe()[0].upper() + rate.describe()[1:])
    for r in overview.unverified:
        click.echo(
            f"Sandbox: {r.address} ({', '.join(r.forms)}) is not a verified identity: SES "
            "refuses to send to it. Verify it in SES or request production access."
        )
    for error in overview.errors:
        click.echo(f"SES could not be asked: {error}", err=True)
    if not overview.healthy:
        click.get_current_context().exit(1)


# -- the suppression list ---------------------------------------------------------------------
@click.group("suppress")
def suppress_group() -> None:
    """The suppression list: addresses formrelay sends nothing to.

    SES's bounces and complaints fill it by themselves (POST /hooks/ses); with SMTP,
    add the addresses that bounce permanently here."""


@suppress_group.command("add")
@click.argument("address")
@click.option(
    "--reason",
    type=click.Choice(suppressions.REASONS),
    default="manual",
    show_default=True,
    help="Why: a permanent bounce, a complaint, or by hand.",
)
@click.option("--detail", help="A note kept with it (a bounce's diagnostic, say).")
@with_appcontext
def suppress_add(address: str, reason: str, detail: str | None) -> None:
    """Stop all mail to ADDRESS; the deliveries waiting for it end dead at once."""
    session = _writing()
    try:
        entry, ended = suppressions.suppress(
            session, address, reason=reason, source="cli", detail=detail
        )
    except DomainError as exc:
        raise _fail(exc) from None
    session.commit()
    click.echo(
        f"Suppressed {entry.address} ({entry.reason}); "
        f"{ended} waiting {'delivery' if ended == 1 else 'deliveries'} ended."
    )


@suppress_group.command("remove")
@click.argument("address")
@with_appcontext
def suppress_remove(address: str) -> None:
    """Let mail reach ADDRESS again (deliveries already dead stay so)."""
    session = _writing()
    try:
        entry = suppressions.unsuppress(session, address)
    except DomainError as exc:
        raise _fail(exc) from None
    session.commit()
    click.echo(f"Removed {entry.address} from the suppression list.")


@suppress_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line, for scripts.")
@with_appcontext
def suppress_list(as_json: bool) -> None:
    """Every suppressed address, newest first."""
    rows = suppressions.list_suppressions(_session())
    db.session.rollback()
    for s in rows:
        if as_json:
            line = {
                "address": s.address,
                "reason": s.reason,
                "source": s.source,
                "detail": s.detail,
                "created_at": s.created_at.isoformat(),
            }
            click.echo(json.dumps(line, ensure_ascii=False))
        else:
            when = s.created_at.strftime("%Y-%m-%d %H:%M UTC")
            detail = f"  {s.detail}" if s.detail else ""
            click.echo(f"{s.address}  {s.reason}  {s.source}  {when}{detail}")
    if not rows and not as_json:
        click.echo("No address is suppressed.")
