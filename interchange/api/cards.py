"""E-HI card lookups for health facilities (SPEC §5, docs/hi-card.md), and their audit listing.

    GET  /api/v1/hi-cards/{id}?name=&birth=[&as_of=]   one card (JSON, or signed XML with
                                                        Accept: application/xml)
    POST /api/v1/hi-cards/lookups[?as_of=]              up to MAX_BATCH cards, answers in order
    GET  /api/v1/persons/{pid}/lookups                  a person's lookups (auditor, admin)

A facility key (or an admin key) may look up cards; a facility key may do nothing else
(interchange.api.http.reader refuses it everywhere else). The name and birth date must agree with
what the agency holds (interchange.records.card.matches); an ID that names no one and an ID whose
name or birth date does not agree get the same answer, status and body, so the endpoint cannot
tell who is insured. Every lookup with a well-formed ID is recorded (store.cards.log), written in
the background.
"""

from __future__ import annotations

import json
import re
from datetime import date

from aiohttp import web

from interchange import codes
from interchange.api import models as m
from interchange.api.http import SERVICES, XML_RESPONSE, card_reader, problem_json, reader, shaped, typed
from interchange.clock import utc_now, vn_now
from interchange.records.card import build_card, matches, read_birth
from interchange.records.cardxml import card_element
from interchange.store.cards import Lookup
from interchange.store.types import ApiKey

_PID = re.compile(r"[0-9]{12}|[0-9]{10}")
MAX_BATCH = 500
FIRST_DAY = date(1995, 1, 1)
UNKNOWN, MISMATCH = "unknown", "mismatch"
NO_CARD = "no card matches this ID, name and birth date"  # unknown and mismatch alike


class _Bad(Exception):
    def __init__(self, code: str, message: str, parameter: str | None = None):
        super().__init__(message)
        self.code = code
        self.parameter = parameter

    def answer(self) -> web.Response:
        return problem_json(400, self.code, str(self), parameter=self.parameter)


def _as_of(request: web.Request) -> date:
    today = vn_now().date()
    text = request.query.get("as_of")
    if text is None:
        return today
    try:
        day = date.fromisoformat(text) if re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text) else None
    except ValueError:
        day = None
    if day is None or not FIRST_DAY <= day <= today:
        raise _Bad(codes.BAD_QUERY, f"as_of: a day YYYY-MM-DD between {FIRST_DAY} and today ({today})", "as_of")
    return day


def _question(pid: object, name: object, birth: object) -> tuple[str, str, date]:
    """A lookup's ID, name and birth date, checked; _Bad otherwise."""
    if not isinstance(pid, str) or not _PID.fullmatch(pid):
        raise _Bad(codes.BAD_PID, f"{str(pid)[:40]!r} is neither a personal ID (12 digits) nor an SI code (10 digits)", "id")
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise _Bad(codes.BAD_QUERY, "name: the person's full name is required (at most 200 characters)", "name")
    if not isinstance(birth, str):
        raise _Bad(codes.BAD_QUERY, "birth: the birth date is required (dd/MM/yyyy or YYYY-MM-DD)", "birth")
    try:
        return pid, name, read_birth(birth)
    except ValueError as exc:
        raise _Bad(codes.BAD_QUERY, f"birth: {exc}", "birth") from None


async def _answer(request: web.Request, key: ApiKey, questions: list[tuple[str, str, date]], as_of: date):
    """(outcome, card or None) per question, in order; every lookup is logged."""
    store = request.app[SERVICES].store
    found = await store.cards.inputs([pid for pid, _, _ in questions])
    now = utc_now()
    answers, logged = [], []
    for pid, name, birth in questions:
        records = found.get(pid)
        card = None
        if records is None:
            outcome = UNKNOWN
        elif not matches(records.identity, name, birth):
            outcome = MISMATCH
        else:
            card = build_card(records, as_of)
            outcome = card.status
        answers.append((outcome, card))
        person_id = records.person_id if records is not None else None
        logged.append(Lookup(now, key.key_id, key.facility, pid, person_id, outcome))
    store.cards.log.record(logged)
    return answers


async def get_card(request: web.Request) -> web.Response:
    key = await card_reader(request)
    try:
        question = _question(request.match_info["id"], request.query.get("name"), request.query.get("birth"))
        as_of = _as_of(request)
    except _Bad as bad:
        return bad.answer()
    ((outcome, card),) = await _answer(request, key, [question], as_of)
    if card is None:
        return problem_json(404, codes.NOT_FOUND, NO_CARD, vi="Không có thẻ nào khớp số định danh, họ tên và ngày sinh này.")
    pid = question[0]
    if XML_RESPONSE in request.headers.get("Accept", ""):
        now = utc_now()
        root = card_element(card, asked=pid, answered_at=now, facility=key.facility)
        signed = request.app[SERVICES].signer.sign_root(root, now)
        return web.Response(body=signed, content_type=XML_RESPONSE, charset="utf-8")
    return shaped({**card.to_json(), "id": pid, "answered_at": utc_now().isoformat()})  # m.CardAnswer


async def post_lookups(request: web.Request) -> web.Response:
    key = await card_reader(request)
    try:
        as_of = _as_of(request)
    except _Bad as bad:
        return bad.answer()
    if request.content_type != "application/json":
        return problem_json(415, codes.CONTENT_TYPE, f"send the body as application/json, not {request.content_type}",
                            vi="Nội dung phải gửi với Content-Type application/json.")  # fmt: skip
    try:
        body = json.loads(await request.read())
    except ValueError:
        body = None
    items = body.get("items") if isinstance(body, dict) else None
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        return problem_json(400, codes.BAD_JSON, 'the body is {"items": [{"id", "name", "birth"}, ...]}', pointer="/items")
    if len(items) > MAX_BATCH:
        return problem_json(400, codes.BAD_JSON, f"{len(items)} items: at most {MAX_BATCH} per request", pointer="/items",
                            vi=f"Tối đa {MAX_BATCH} mục mỗi yêu cầu.")  # fmt: skip
    results: list[dict | None] = [None] * len(items)
    asked: list[tuple[int, tuple[str, str, date]]] = []
    for n, item in enumerate(items):
        try:
            asked.append((n, _question(item.get("id"), item.get("name"), item.get("birth"))))
        except _Bad as bad:
            results[n] = {"id": item.get("id"), "status": 400, "code": bad.code, "message": str(bad)}
    answers = await _answer(request, key, [q for _, q in asked], as_of) if asked else []
    for (n, (pid, _, _)), (_, card) in zip(asked, answers, strict=True):
        if card is None:
            results[n] = {"id": pid, "status": 404, "code": codes.NOT_FOUND, "message": NO_CARD}
        else:
            results[n] = {"id": pid, "status": 200, "card": card.to_json()}
    answer = {"as_of": as_of.isoformat(), "answered_at": utc_now().isoformat(), "results": results}
    # a refused item echoes what was sent (any JSON): checked and written by pydantic
    return typed(m.LookupsOut, answer) if len(asked) < len(items) else shaped(answer)  # m.LookupsOut


async def get_person_lookups(request: web.Request) -> web.Response:
    key = await reader(request)
    if key.role not in ("auditor", "admin"):
        return problem_json(403, codes.AUTH_ROLE, "the lookups of a person are for auditors and admins",
                            vi="Chỉ khóa auditor hoặc admin được xem lịch sử tra cứu thẻ.")
    pid = request.match_info["pid"]
    if not _PID.fullmatch(pid):
        return problem_json(400, codes.BAD_PID, f"{pid[:40]!r} is neither a personal ID (12 digits) nor an SI code (10 digits)",
                            parameter="pid")  # fmt: skip
    lookups = await request.app[SERVICES].store.cards.lookups_of(pid)
    return typed(m.PersonLookups, {"id": pid, "lookups": [x.to_json() for x in lookups]})

