"""Configuration: `config.toml`, then `INTERCHANGE_<SECTION>_<KEY>` environment overrides (SPEC §10)."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, get_type_hints

REPO_ROOT = Path(__file__).resolve().parent.parent
REVOCATION_CACHE = "revocation"  # fetched CRLs, under data_dir
DEFAULT_CONFIG = REPO_ROOT / "config.toml"
DEFAULT_TARGETS = {
    "600": "5 working days",
    "602": "5 working days",
    "603": "5 working days",
    "630": "6 working days",
    "04/DK-IVAN": "2 working hours",
    "05/SD-IVAN": "2 working hours",
    "06/NG-IVAN": "2 working hours",
}


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    role: str = "agency"  # agency | ivan
    office_code: str = "BHXH"
    workers: int = 2  # processes for signature and schema work; 0 runs it in a thread
    # A form of this many MiB or more is validated against its XSD in a process forked from the
    # worker, beside the worker's pass over it (Linux), when another worker is idle: a large
    # dossier is answered sooner for about 5 % more CPU on it, on another core. 0: one pass.
    validate_aside_mib: float = 16.0
    # A connection is closed when no complete request head (line and headers) has arrived this
    # long after it opened or after its last answer: idle keep-alive, and slow headers (slowloris).
    keepalive_seconds: float = 15.0
    body_seconds: float = 30.0  # a body may take this long, plus 1 s per body_min_rate bytes received; 0: no limit
    body_min_rate: int = 16384  # bytes per second a slow upload must keep up (after body_seconds)
    log_format: str = "json"  # json: one JSON object per line and event | text: plain lines

    @property
    def validate_aside_from(self) -> int:
        """`validate_aside_mib` in bytes (what `intake.pipeline.Receiver` takes)."""
        return int(self.validate_aside_mib * 1024 * 1024)


@dataclass
class StoreConfig:
    url: str = ""  # empty: SQLite file interchange.db in data_dir


@dataclass
class TrustConfig:
    anchors_dir: str = "certs/trusted"
    crl_dir: str = "certs/crl"
    legacy_sha1: bool = False
    cache_seconds: int = 300  # how long one certificate's path validation is reused
    revocation: str = "soft-fail"  # status unknown: soft-fail (accept) | hard-fail | require (refuse)
    fetch_revocation: bool = False  # fetch CRLs from the certificates' distribution points (network)
    ocsp: bool = False  # ask the OCSP responder named in the certificate (network)
    crl_refresh_minutes: int = 60  # the server re-fetches known CRLs this often (with fetch_revocation)


@dataclass
class SigningConfig:
    key: str = "server/notice-key.pem"  # relative paths are under data_dir
    cert: str = "server/notice-cert.pem"  # leaf first, then the chain


@dataclass
class LimitsConfig:
    max_body_bytes: int = 128 * 1024 * 1024  # a 50,000-row D02-TS dossier is about 81 MiB
    max_depth: int = 64
    max_elements: int = 5_000_000
    max_files: int = 50
    max_errors: int = 100
    max_attributes: int = 256  # attributes of one XML element
    max_namespaces: int = 64  # namespace declarations on one XML element
    max_name_length: int = 1000  # characters of an XML element or attribute name
    max_attribute_length: int = 65_536  # characters of one XML attribute value
    max_text_length: int = 10 * 1024 * 1024  # characters of one XML text node (the envelope's NoiDungFile exempt)
    rate_per_second: float = 100.0  # per API key and server process; 0 switches the limit off
    rate_burst: int = 200
    # CPU budget of one call in a worker process (receipt stages, rules, verify, notice signing):
    # worker_seconds plus worker_seconds_per_mib per MiB of its input; past it the worker
    # process is ended and the request answered 503. 0 switches it off. Processes only
    # ([server] workers > 0): a thread cannot be stopped.
    worker_seconds: float = 5.0
    worker_seconds_per_mib: float = 0.5


@dataclass
class RegistrationConfig:
    required: bool = False


@dataclass
class JobsConfig:
    """The work queue (interchange.jobs): each server process claims due work this often."""

    interval_seconds: float = 2.0  # 0: this process runs no work (another one does)
    # A receipt that brings work due now (judging, registration) starts this process's next round
    # that many seconds later instead of at the next tick: steady small groups, results within a
    # fraction of a second (jobs.runner.WorkRunner.wake). 0: the ticks alone.
    wake_seconds: float = 0.25
    batch: int = 64  # items claimed at a time (result work settles them in one group: jobs.result)
    concurrency: int = 4  # items of a batch run at once
    # A claim holds an item this long; the process running it renews the lease every
    # heartbeat_seconds (at most half the lease), so a process that died loses its work this soon.
    lease_seconds: int = 15
    heartbeat_seconds: float = 5.0
    # This server's name among those sharing the database (default: the host name). With a stable
    # name a restarted process releases at once what its earlier run held (docs/work-leases.md).
    instance: str = ""
    max_attempts: int = 6  # then the item is failed (and stays visible as overdue)


@dataclass
class RulesConfig:
    """The rule layer (interchange.rules)."""

    parameters: str = ""  # legal parameters file; empty: the one shipped (interchange/legal/legal-parameters.toml)


@dataclass
class DeliveryConfig:
    """Result delivery to callback URLs and e-mail (interchange.delivery)."""

    timeout_seconds: float = 10.0  # one callback POST, connect to last byte; longer is a failed attempt
    first_retry_seconds: int = 180  # after the first failed attempt; doubling after each next one
    max_retry_seconds: int = 3600  # the cap of that doubling
    give_up_hours: float = 24.0  # a delivery still failing this long after its notice is given up
    max_attempts: int = 40  # ... or after this many attempts, whichever comes first
    breaker_failures: int = 5  # consecutive failures of one callback host open its circuit ...
    breaker_cooldown_seconds: int = 300  # ... for this long (attempts wait, not counted); then one trial
    allow_private_urls: bool = False  # callback URLs on loopback or private addresses (SSRF): tests, labs
    email_sender: str = "outbox"  # outbox (.eml files in <data_dir>/outbox) | smtp | off
    mail_from: str = "interchange@localhost"
    smtp_host: str = "localhost"
    smtp_port: int = 587
    smtp_starttls: bool = True
    smtp_user: str = ""
    smtp_password: str = ""  # better given as INTERCHANGE_DELIVERY_SMTP_PASSWORD than in the file


@dataclass
class UpstreamConfig:
    """The upstream agency server of the `ivan` role (interchange.forwarding)."""

    url: str = ""  # base URL of the upstream server (role agency); required in role ivan
    api_key: str = ""  # this I-VAN's API key there (role ivan, bound to its MaIVAN)
    target_minutes: int = 15  # forward within this, clock time (SPEC §8: internal target; legal ceiling 2 h)
    timeout_seconds: float = 120.0  # one request upstream, the upload of a large dossier included
    first_retry_seconds: int = 180  # wait after the first failed try, doubling with every further one
    max_retry_seconds: int = 3600  # up to this; the same schedule polls the upstream for its KET_QUA
    breaker_failures: int = 5  # consecutive failures (network, timeout, 5xx, 429) that open the circuit
    breaker_cooldown_seconds: int = 600  # no tries while it is open; then one probe
    # Who signs the agency's notices: pinned, never the units' [trust] anchors alone (one is required).
    notice_cert: str = ""  # the agency's notice certificate (PEM): only its public key's notices are believed
    notice_anchors: str = ""  # folder of PEM anchors of the agency's notice CA only; with notice_cert, its chain's
    notice_subject: str = ""  # optional: the notice signer's exact subject (RFC 4514, as `openssl x509 -subject -nameopt RFC2253`)
    # This server's base URL as the agency reaches it: the I-VAN registers a callback there and the
    # agency pushes its KET_QUA at once (docs/forwarding-push.md); empty: polling only.
    push_url: str = ""

    def check(self) -> None:
        """Refuse to start the `ivan` role with settings that cannot work (ValueError saying which)."""
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(
                f"config: upstream.url must be the http(s) URL of the upstream agency server in role ivan, not {self.url!r}"
            )
        if not self.api_key:
            raise ValueError("config: upstream.api_key is required in role ivan (an ivan key of the upstream server)")
        for name in ("target_minutes", "timeout_seconds", "first_retry_seconds", "max_retry_seconds",
                     "breaker_failures", "breaker_cooldown_seconds"):  # fmt: skip
            if getattr(self, name) <= 0:
                raise ValueError(f"config: upstream.{name} must be positive, not {getattr(self, name)!r}")
        if self.push_url and not self.push_url.startswith(("http://", "https://")):
            raise ValueError(f"config: upstream.push_url must be this server's http(s) base URL, not {self.push_url!r}")
        if self.max_retry_seconds < self.first_retry_seconds:
            raise ValueError("config: upstream.max_retry_seconds must not be less than upstream.first_retry_seconds")
        if not self.notice_cert and not self.notice_anchors:
            raise ValueError(
                "config: role ivan needs the agency's notice signer pinned: upstream.notice_cert (the agency's "
                "notice certificate, PEM) or upstream.notice_anchors (a folder holding only the agency's notice "
                "CA); the units' [trust] anchors are never enough, since any unit's certificate chains to them"
            )


@dataclass
class CalendarConfig:
    """The working calendar of target times (SPEC §8); see interchange.workcal."""

    weekdays: list[str] = field(default_factory=lambda: ["mon", "tue", "wed", "thu", "fri"])
    hours: list[str] = field(default_factory=lambda: ["08:00-12:00", "13:00-17:00"])
    holidays_country: str = "VN"  # public holidays from the `holidays` package; "" for none
    extra_days_off: list[str] = field(default_factory=list)  # "YYYY-MM-DD", on top of the public holidays
    make_up_days: list[str] = field(default_factory=list)  # "YYYY-MM-DD" worked, even on a weekend


@dataclass(frozen=True)
class TrustPaths:
    """The folders of [trust], resolved (`Config.trust_paths`): what the trust store reads."""

    anchors: Path  # PEM trust anchors ([trust] anchors_dir)
    crls: Path  # CRL files put there by hand ([trust] crl_dir)
    cache: Path  # CRLs fetched from distribution points (<data_dir>/revocation)


@dataclass
class Config:
    data_dir: str = "data"
    server: ServerConfig = field(default_factory=ServerConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    trust: TrustConfig = field(default_factory=TrustConfig)
    signing: SigningConfig = field(default_factory=SigningConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    registration: RegistrationConfig = field(default_factory=RegistrationConfig)
    upstream: UpstreamConfig = field(default_factory=UpstreamConfig)
    rules: RulesConfig = field(default_factory=RulesConfig)
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig)
    jobs: JobsConfig = field(default_factory=JobsConfig)
    calendar: CalendarConfig = field(default_factory=CalendarConfig)
    # procedure -> target for the result notice (SPEC §8); a [targets] section replaces these
    targets: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_TARGETS))
    base_dir: Path = field(default=REPO_ROOT, repr=False)  # relative paths resolve against it

    def path(self, value: str, under_data: bool = False) -> Path:
        p = Path(value)
        if p.is_absolute():
            return p
        return (self.data_path / p) if under_data else (self.base_dir / p)

    @property
    def data_path(self) -> Path:
        p = Path(self.data_dir)
        return p if p.is_absolute() else self.base_dir / p

    @property
    def store_url(self) -> str:
        return self.store.url or f"sqlite+aiosqlite:///{self.data_path / 'interchange.db'}"

    @property
    def signing_key_path(self) -> Path:
        return self.path(self.signing.key, under_data=True)

    @property
    def signing_cert_path(self) -> Path:
        return self.path(self.signing.cert, under_data=True)

    @property
    def trust_paths(self) -> TrustPaths:
        return TrustPaths(
            self.path(self.trust.anchors_dir), self.path(self.trust.crl_dir), self.data_path / REVOCATION_CACHE
        )

    @property
    def parameters_path(self) -> Path | None:
        """The legal parameters file of [rules]; None: the one shipped with the package."""
        return self.path(self.rules.parameters) if self.rules.parameters else None


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


def _coerce(value: Any, kind: Any, where: str) -> Any:
    """A value of the declared type, or a clear error (a typo must not flip a security switch)."""
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE or text in _FALSE:
            return text in _TRUE
        raise ValueError(f"config: {where} must be true or false, not {value!r}")
    if kind is int:
        if isinstance(value, bool):
            raise ValueError(f"config: {where} must be a whole number, not {value!r}")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ValueError(f"config: {where} must be a whole number, not {value!r}") from None
    if kind is float:
        if isinstance(value, bool):
            raise ValueError(f"config: {where} must be a number, not {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"config: {where} must be a number, not {value!r}") from None
    if kind is str and not isinstance(value, str):
        raise ValueError(f"config: {where} must be a string, not {value!r}")
    return value


def _keys(obj: Any) -> set[str]:
    return {f.name for f in fields(obj)} - {"base_dir"}


def _fill(obj: Any, data: dict, where: str) -> None:
    hints = get_type_hints(type(obj))
    for key, value in data.items():
        if key not in _keys(obj):
            raise ValueError(f"config: unknown key {where}{key}")
        current = getattr(obj, key)
        if is_dataclass(current):
            if not isinstance(value, dict):
                raise ValueError(f"config: {where}{key} must be a section")
            _fill(current, value, f"{where}{key}.")
        elif key == "targets":
            if not isinstance(value, dict):
                raise ValueError("config: targets must be a section")
            setattr(obj, key, {str(k): str(v) for k, v in value.items()})  # the file's list replaces the defaults
        else:
            setattr(obj, key, _coerce(value, hints.get(key), f"{where}{key}"))


def _apply_env(cfg: Config, environ: dict[str, str]) -> None:
    for f in fields(cfg):
        if f.name == "base_dir":
            continue
        current = getattr(cfg, f.name)
        if is_dataclass(current):
            hints = get_type_hints(type(current))
            for sub in fields(current):
                name = f"INTERCHANGE_{f.name}_{sub.name}".upper()
                if name in environ:
                    setattr(current, sub.name, _coerce(environ[name], hints[sub.name], name))
        elif f.name == "targets":
            prefix = "INTERCHANGE_TARGETS_"
            for name, value in environ.items():
                if name.startswith(prefix):
                    current[name[len(prefix) :]] = value
        else:
            name = f"INTERCHANGE_{f.name}".upper()
            if name in environ:
                setattr(cfg, f.name, _coerce(environ[name], str, name))


def load_config(path: str | os.PathLike | None = None, environ: dict[str, str] | None = None) -> Config:
    """Read the config file (argument, else $INTERCHANGE_CONFIG, else ./config.toml) and apply env overrides."""
    environ = dict(os.environ if environ is None else environ)
    chosen = Path(path or environ.get("INTERCHANGE_CONFIG") or DEFAULT_CONFIG)
    cfg = Config()
    if chosen.exists():
        cfg.base_dir = chosen.resolve().parent
        with chosen.open("rb") as fh:
            _fill(cfg, tomllib.load(fh), "")
    elif path is not None or environ.get("INTERCHANGE_CONFIG"):
        raise FileNotFoundError(f"config file not found: {chosen}")
    _apply_env(cfg, environ)
    return cfg
