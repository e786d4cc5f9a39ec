"""The typed shapes of the JSON API (pydantic): what the routes accept and answer. The API
document (interchange.api.openapi) is generated from these models, and the routes build their
answers with them, so that the document and the wire cannot drift apart.

Times are kept as the ISO 8601 strings the routes have always sent (`datetime.isoformat()`), typed
`date-time` in the document.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from interchange.kinds import NOTICE_SLUGS
from interchange.store.forwarding import STATES as FORWARDING_STATES
from interchange.store.types import ACCEPTED, RECEIVED, REFUSED, REJECTED

DateTime = Annotated[str, Field(json_schema_extra={"format": "date-time"})]
Day = Annotated[str, Field(json_schema_extra={"format": "date"})]
DOSSIER_STATES = (RECEIVED, REFUSED, ACCEPTED, REJECTED)
PERIOD = r"^(0[1-9]|1[0-2])/[0-9]{4}$"  # KyKeKhai MM/yyyy
PID = r"^([0-9]{12}|[0-9]{10})$"  # personal ID or SI code
YEAR = "(199[5-9]|20[0-9]{2})"  # social insurance began in 1995
YEARS, MONTH, DAY = "(1[89][0-9]{2}|20[0-9]{2})", "(0[1-9]|1[0-2])", "(0[1-9]|[12][0-9]|3[01])"
# an absolute http(s) URL without credentials, fragment, spaces or control characters (its host is
# checked further by interchange.delivery.callback: literal non-public addresses, special-use names)
CALLBACK_URL = (r"^https?://[A-Za-z0-9._~-]+(:(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}"
                r"|[0-9]{1,4}))?([/?][!-\"$-~]*)?$")
MAX_PAGE = 500


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Open(BaseModel):
    """A shape whose listed members are always there; more may be added later."""

    model_config = ConfigDict(extra="allow")


# ---- errors -------------------------------------------------------------------------------------


class ProblemDetails(Model):
    """RFC 9457 problem details, with the stable `code` of interchange.codes and the text in
    Vietnamese (`title`, `detail`) and English (`title_en`, `detail_en`)."""

    type: str = Field(description="urn:interchange:problem:<code>")
    title: str = Field(description="what the code means, in Vietnamese")
    title_en: str = Field(description="what the code means, in English")
    status: int
    detail: str = Field(description="this occurrence, in Vietnamese")
    detail_en: str = Field(description="this occurrence, in English")
    code: str = Field(description="stable code (interchange codes)")
    instance: str = Field(description="the request's path")
    parameter: str | None = Field(None, description="the query, path or header parameter at fault, when there is one")
    pointer: str | None = Field(None, description="the member of the JSON body at fault (JSON Pointer), when there is one")
    allowed: list[str] | None = Field(None, description="the values the parameter may take, when there is a list")
    request_id: str | None = Field(None, description="the request id (also in the X-Request-Id header)")
    message: str = Field(description="deprecated: the same as detail_en")


class NoticeProblem(Open):
    """One error or warning as in a notice's Loi (SPEC §4)."""

    layer: str
    code: str
    message_vi: str
    message_en: str = ""
    xpath: str = ""
    line: int | None = None
    form: str | None = None
    value: str | None = None
    severity: Literal["error", "warning"] = "error"


# ---- dossiers -----------------------------------------------------------------------------------


class UnitRef(Model):
    mst: str | None
    code: str | None
    name: str | None


class Revocation(Open):
    crls: int = Field(description="how many CRLs were used (the CRLs are in the evidence bundle)")
    ocsp: int = Field(description="how many OCSP answers were used (in the evidence bundle)")


class Signer(Open):
    """A signature report (the chain's PEM and revocation proofs are in the evidence bundle)."""

    document: str | None = None
    form: str | None = None
    valid: bool
    signer: dict[str, Any] | None = Field(None, description="the signing certificate: subject, issuer, serial, validity...")
    mst: str | None = None
    chain: list[Any] = []
    signing_time: str | None = None
    signature_method: str | None = None
    revocation: Revocation | None = None
    problems: list[NoticeProblem] = []


class Work(Model):
    kind: str
    state: str
    due_at: DateTime
    done_at: DateTime | None
    overdue: bool
    attempts: int
    last_error: str | None


class Dossier(Model):
    id: str
    so_ho_so: str | None = Field(description="the dossier number NNNNN/YYYY/<office> (received dossiers)")
    state: Literal[DOSSIER_STATES]
    sha256: str
    size: int
    received_at: DateTime
    due_at: DateTime | None
    result_at: DateTime | None
    parameters: dict[str, Any] | None = Field(description="the legal parameters the rule layer applied")
    overdue: bool = Field(description="the result is late, or not given and its time has passed")
    unit: UnitRef
    ivan_code: str | None
    procedure: str | None
    period: str | None
    idempotency_key: str | None
    layers: dict[str, str] = Field(description="layer -> passed | failed | not_run")
    errors: list[NoticeProblem]
    signers: list[Signer]
    notices: dict[str, str] = Field(description="notice kind -> its URL")
    original: str
    work: list[Work] | None = Field(None, description="the dossier's work items (GET of one dossier)")


class DossierPage(Model):
    items: list[Dossier]
    next_cursor: str | None = Field(description="give as ?cursor= for the next page; null on the last")


class DossierQuery(Model):
    """The filters of GET /api/v1/dossiers."""

    state: Literal[DOSSIER_STATES] | None = None
    procedure: str | None = Field(None, max_length=50, description="MaThuTuc")
    period: str | None = Field(None, pattern=PERIOD, description="KyKeKhai, MM/yyyy")
    so_ho_so: str | None = Field(None, max_length=50, description="the dossier number (SoHoSo), e.g. 00001/2026/BHXH")
    mst: str | None = Field(None, max_length=20, description="the declaring unit's tax code (MaSoThue)")
    from_: str | None = Field(None, alias="from", description="received at or after (ISO 8601; UTC without offset)",
                              json_schema_extra={"format": "date-time"})  # fmt: skip
    to: str | None = Field(None, description="received before (ISO 8601; UTC without offset)",
                           json_schema_extra={"format": "date-time"})  # fmt: skip
    limit: int = Field(50, ge=1, le=MAX_PAGE, description="items per page")
    cursor: str | None = Field(None, description="next_cursor of the page before; empty or absent: the first page")


class UnitRegistration(Model):
    mst: str
    unit_code: str | None
    name: str | None
    state: str = Field(description="active or stopped")
    email: str | None
    address: str | None
    contact: str | None
    result_channel: str | None
    updated_at: DateTime
    registration: str = Field(description="the registration dossier's URL")


# ---- callbacks and deliveries -------------------------------------------------------------------


class CallbackIn(Model):
    model_config = ConfigDict(extra="allow")
    url: str = Field(max_length=2000, pattern=CALLBACK_URL, description="http(s) URL of a public address")


class Subscription(Model):
    owner: str
    url: str
    key_id: str
    created_at: DateTime


class DeliveryAttempt(Model):
    n: int
    at: DateTime
    status: int | None
    error: str | None
    duration_ms: int | None


class Delivery(Model):
    id: str
    notice: str
    channel: str
    recipient: str
    target: str | None = Field(description="the URL or address; only for its owner and auditors")
    state: str
    attempt_count: int
    next_at: DateTime | None
    last_error: str | None
    created_at: DateTime
    delivered_at: DateTime | None
    attempts: list[DeliveryAttempt]


class Deliveries(Model):
    dossier: str
    deliveries: list[Delivery]


# ---- role ivan: forwarding ----------------------------------------------------------------------


class ForwardTry(Model):
    n: int
    kind: str
    at: DateTime
    outcome: str
    http_status: int | None
    error: str | None
    duration_ms: int | None
    upstream_id: str | None


class ForwardResult(Model):
    due_at: DateTime | None
    polls: int
    relayed_at: DateTime | None
    state: str


class Forwarding(Model):
    dossier_id: str
    state: Literal[FORWARDING_STATES]
    due_at: DateTime | None
    legal_deadline_at: DateTime
    overdue: bool
    past_legal_deadline: bool
    forwarded_at: DateTime | None
    upstream_id: str | None
    attempts: int
    next_try_at: DateTime | None
    last_error: str | None
    result: ForwardResult
    notices: dict[str, str]
    tries: list[ForwardTry]


class PushOutcome(Model):
    """What became of a notice the upstream agency pushed to this I-VAN."""

    outcome: Literal["relayed", "duplicate", "ignored"]
    message: str
    dossier_id: str | None


# ---- the e-SI book and e-HI cards ---------------------------------------------------------------


class Identity(Model):
    si_code: str | None
    personal_id: str | None
    name: str | None
    birth_date: Day | None
    gender: int | None
    nationality: str | None


class Amounts(Model):
    employer: int
    employee: int
    total: int


class FundAmount(Model):
    fund: str
    name: str
    basis: int
    employer: int
    employee: int


class Source(Model):
    dossier_id: str
    stt: int
    pa: str


class Period(Model):
    unit: UnitRef
    from_month: str = Field(description="MM/yyyy")
    to_month: str | None = Field(description="MM/yyyy; null: open at as_of")
    months: int
    position: str | None
    workplace: str | None
    salary: str | None = Field(description="as declared (a decimal number)")
    coefficient: bool
    allowances: dict[str, str | None]
    salary_basis: int = Field(description="VND before the caps")
    rate: str | None
    region: str | None
    funds: list[FundAmount]
    monthly: Amounts
    totals: Amounts
    problem: str | None = Field(description="why no amounts could be computed")
    sources: list[Source]


class Benefit(Model):
    regime: str | None
    kind: str | None
    group: str | None
    from_date: Day | None
    to_date: Day | None
    days: int | None
    unit: UnitRef
    dossier_id: str
    received_at: DateTime
    stt: int | None
    data: dict[str, Any]


class Book(Model):
    identity: Identity
    as_of: str = Field(description="the last month of the timeline, MM/yyyy")
    periods: list[Period]
    totals: Amounts
    benefits: list[Benefit]
    parameters: dict[str, Any]
    notes: list[str]


class BookQuery(Model):
    as_of: str | None = Field(None, description="last month of the timeline, MM/yyyy or YYYY-MM (default: the "
                              "current month in Asia/Ho_Chi_Minh); from 01/1995 to a year after this month",
                              pattern=rf"^((0[1-9]|1[0-2])/{YEAR}|{YEAR}-(0[1-9]|1[0-2]))$")


class BenefitLevel(Model):
    code: str
    percent: int | None


class FacilityRef(Model):
    province: str | None
    code: str | None


class Card(Model):
    personal_id: str | None
    si_code: str | None
    name: str | None
    birth_date: Day | None
    gender: int | None
    status: Literal["valid", "not_valid", "suspended"]
    valid_from: Day | None
    valid_to: Day | None
    open: bool
    benefit: BenefitLevel | None
    facility: FacilityRef | None
    five_years_at: Day | None
    unit: UnitRef | None
    paid_by: str | None = Field(description="unit or si_fund (maternity leave)")
    as_of: Day


class CardAnswer(Card):
    id: str = Field(description="the ID as asked")
    answered_at: DateTime


class CardQuery(Model):
    name: str = Field(min_length=1, max_length=200, description="full name, as held by the agency (case, spacing "
                      "and Unicode normalisation do not matter)")
    birth: str = Field(description="birth date, dd/MM/yyyy or YYYY-MM-DD", pattern=rf"^({DAY}/{MONTH}/{YEARS}|{YEARS}-{MONTH}-{DAY})$")
    as_of: Day | None = Field(None, description="the day to answer for, YYYY-MM-DD, not after today (default: today "
                              "in Asia/Ho_Chi_Minh); from 1995-01-01", pattern=rf"^{YEAR}-{MONTH}-{DAY}$")


class AsOfQuery(Model):
    as_of: Day | None = CardQuery.model_fields["as_of"]


class LookupQuestion(Model):
    """One question; a missing or malformed member is answered in its own result (status 400), the
    other questions are answered as usual."""

    model_config = ConfigDict(extra="allow")
    id: Any = Field(None, description="12-digit personal ID or 10-digit SI code")
    name: Any = Field(None, description="full name")
    birth: Any = Field(None, description="birth date, dd/MM/yyyy or YYYY-MM-DD")


class LookupsIn(Model):
    model_config = ConfigDict(extra="allow")
    items: list[LookupQuestion] = Field(max_length=500)


class LookupFound(Model):
    id: str
    status: Literal[200]
    card: Card


class LookupMiss(Model):
    id: Any = Field(description="the ID as asked")
    status: Literal[400, 404]
    code: str
    message: str


class LookupsOut(Model):
    as_of: Day
    answered_at: DateTime
    results: list[LookupFound | LookupMiss]


class Lookup(Model):
    at: DateTime
    key_id: str
    facility: str | None
    asked_id: str
    outcome: Literal["valid", "not_valid", "suspended", "unknown", "mismatch"]


class PersonLookups(Model):
    id: str
    lookups: list[Lookup]


# ---- verify -------------------------------------------------------------------------------------


class VerifyReport(Open):
    ok: bool = Field(description="every signature is valid")
    signatures: list[Signer]
    problems: list[NoticeProblem]


# ---- operations ---------------------------------------------------------------------------------


class Health(Model):
    status: Literal["ok"]


class Readiness(Model):
    status: Literal["ready", "not ready"]
    components: dict[str, str] = Field(description="database, workers, notice_key, trust_anchors: ok or why not")
    failing: list[str] = Field(description="the components that are not ok")


NOTICE_KINDS = NOTICE_SLUGS


# ---- the web console's reads ---------------------------------------------------------------------


class CodeEntry(Open):
    """A code the server can emit: codes.py's (layer, text_vi, text_en) or a rule's (forms, title, message)."""

    code: str
    severity: str


class CodeCatalogue(Model):
    codes: list[CodeEntry]


class KeyInfo(Model):
    """The caller's own key, never its secret."""

    key_id: str
    role: str
    mst: str | None
    ivan: str | None
    facility: str | None
    label: str | None
    created_at: str
    sees_all: bool
