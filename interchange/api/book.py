"""GET /api/v1/persons/{pid}/book: the electronic social-insurance book of a person (SPEC §5, §6).

`pid` is the 12-digit personal ID or the 10-digit SI code; `?as_of=MM/yyyy` (or `YYYY-MM`) sets
the last month of the timeline (default: the current month in Vietnam). Auditors and admins see
the whole book; a unit (submitter key) sees the person's identity and the periods and benefit
claims of its own dossiers; an I-VAN those of the dossiers it carried. A person unknown, or with
nothing the caller may see, is a 404 either way (no existence leak).
"""

from __future__ import annotations

import re

from aiohttp import web

from interchange import codes
from interchange.api.http import SERVICES, problem_json, reader
from interchange.records.book import build_book, read_month, this_month
from interchange.rules.catalogue import FIRST_MONTH

_PID = re.compile(r"[0-9]{12}|[0-9]{10}")

async def get_person_book(request: web.Request) -> web.Response:
    key = await reader(request)
    pid = request.match_info["pid"]
    if not _PID.fullmatch(pid):
        return problem_json(
            400,
            codes.BAD_PID,
            f"{pid!r} is neither a personal ID (12 digits) nor an SI code (10 digits)",
        )
    as_of = request.query.get("as_of")
    if as_of is not None:
        try:
            as_of = read_month(as_of)
        except ValueError as exc:
            return problem_json(400, codes.BAD_QUERY, f"as_of: {exc}")
        latest = this_month().plus(12)  # the book is built month by month: no further than a year ahead
        if not FIRST_MONTH <= as_of <= latest:
            return problem_json(400, codes.BAD_QUERY, f"as_of: between {FIRST_MONTH.wire} and {latest.wire}")
    records = await request.app[SERVICES].store.persons.book_rows(pid, key.scope)
    if records is None:
        return problem_json(404, codes.NOT_FOUND, "no such person")  # or nothing the caller may see
    book = build_book(records, request.app[SERVICES].params, as_of)
    return web.json_response(book.to_json())
