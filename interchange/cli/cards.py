"""`interchange hi-card ID --name NAME --birth DATE`: a client of GET /api/v1/hi-cards/{id}
(SPEC §5, §10; docs/hi-card.md). The server URL and API key as for every client command
(interchange.cli.remote: flags, environment, client config).

Exit 0 when the card is valid, 1 when it is not valid or suspended, no card matches, or the
server refuses; 2 on a usage error (no API key)."""

from __future__ import annotations

import asyncio
import json

from interchange.cli.common import EXIT_FAILED, EXIT_OK
from interchange.cli.remote import Client, add_remote_options, remote_of


def add_command(sub) -> None:
    """Register `hi-card` on the `interchange` parser."""
    p = sub.add_parser("hi-card", help="look up a person's e-HI card on a server (facility or admin key)")
    p.add_argument("id", help="the person's 12-digit personal ID or 10-digit SI code")
    p.add_argument("--name", required=True, help="the person's full name, as the agency holds it")
    p.add_argument("--birth", required=True, help="the person's birth date, dd/MM/yyyy or YYYY-MM-DD")
    p.add_argument("--as-of", help="answer for this past day, YYYY-MM-DD (default: today)")
    add_remote_options(p)
    p.add_argument("--json", action="store_true", help="print the server's JSON answer as it is")
    p.set_defaults(func=cmd_hi_card)


def cmd_hi_card(args) -> int:
    remote = remote_of(args)
    params = {"name": args.name, "birth": args.birth, **({"as_of": args.as_of} if args.as_of else {})}

    async def get():
        async with Client(remote) as client:
            return await client.get(f"/api/v1/hi-cards/{args.id}", params=params, headers={"Accept": "application/json"})

    answer = asyncio.run(get())
    body = answer.json() or {"status": answer.status, "message": answer.body[:200].decode("utf-8", "replace")}
    if args.json:
        print(json.dumps(body, ensure_ascii=False, indent=2))
    elif answer.status != 200:
        print(answer.problem())
    else:
        print(summary(body))
    return EXIT_OK if answer.status == 200 and body.get("status") == "valid" else EXIT_FAILED


def summary(card: dict) -> str:
    """A card as a few lines of text."""
    who = " / ".join(x for x in (card.get("personal_id"), card.get("si_code")) if x)
    lines = [f"{card.get('name')} ({who}), born {card.get('birth_date')}", f"status: {card['status']}"]
    if card.get("valid_from"):
        lines.append(f"valid from {card['valid_from']} to {card.get('valid_to') or '(open: no end declared)'}")
    if card.get("benefit"):
        lines.append(f"benefit level: {card['benefit']['percent']}% (code {card['benefit']['code']})")
    if card.get("facility"):
        f = card["facility"]
        lines.append(f"first-contact facility: {f['code']} (province {f.get('province') or '-'})")
    if card.get("five_years_at"):
        lines.append(f"five continuous years: {card['five_years_at']}")
    if card.get("unit"):
        u = card["unit"]
        lines.append(f"paid by: {u.get('name') or ''} MST {u.get('mst') or '-'} ({card.get('paid_by')})")
    lines.append(f"as of {card['as_of']} (answered {card.get('answered_at')})")
    return "\n".join(lines)
