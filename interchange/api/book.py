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
from interchange.api import models as m
from interchange.api.http import SERVICES, not_found, parse_query, problem_json, reader, typed
from interchange.records.book import build_book, read_month, this_month
from interchange.rules.catalogue import FIRST_MONTH

_PID = re.compile(r"[0-9]{12}|[0-9]{10}")

async def get_person_book(request: web.Request) -> web.Response:
    key = await reader(request)
    pid = request.match_info["pid"]
    if not _PID.fullmatch(pid):
        return problem_json(400, codes.BAD_PID, f"{pid[:40]!r} is neither a personal ID (12 digits) nor an SI code "
                            "(10 digits)", parameter="pid")  # fmt: skip
    as_of = parse_query(request, m.BookQuery).as_of
    if as_of is not None:
        try:
            as_of = read_month(as_of)
        except ValueError as exc:
            return problem_json(400, codes.BAD_QUERY, f"as_of: {exc}", vi="Tham số as_of không phải tháng hợp lệ.",
                                parameter="as_of")  # fmt: skip
        latest = this_month().plus(12)  # the book is built month by month: no further than a year ahead
        if not FIRST_MONTH <= as_of <= latest:
            return problem_json(400, codes.BAD_QUERY, f"as_of: between {FIRST_MONTH.wire} and {latest.wire}",
                                vi=f"Tham số as_of phải từ {FIRST_MONTH.wire} đến {latest.wire}.", parameter="as_of")
    records = await request.app[SERVICES].store.persons.book_rows(pid, key.scope)
    if records is None:
        return not_found("person")  # or nothing the caller may see
    book = build_book(records, request.app[SERVICES].params, as_of)
    return typed(m.Book, book.to_json())
