"""`interchange hi-card ID --name NAME --birth DATE`: a client of GET /api/v1/hi-cards/{id}
(SPEC §5, §10; docs/hi-card.md). The server URL and API key come from `--url`/`--api-key`, else
the environment (`INTERCHANGE_URL`, `INTERCHANGE_API_KEY`), else the config's [server] address.

Exit 0 when the card is valid, 1 when it is not valid or suspended, no card matches, or the
server refuses; 2 on a usage error (no API key)."""

from __future__ import annotations

import asyncio
import json
import os
import sys

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def add_command(sub, config_url) -> None:
    """Register `hi-card` on the `interchange` parser; `config_url(args)` gives the default URL."""
    p = sub.add_parser("hi-card", help="look up a person's e-HI card on a server (facility or admin key)")
    p.add_argument("id", help="the person's 12-digit personal ID or 10-digit SI code")
    p.add_argument("--name", required=True, help="the person's full name, as the agency holds it")
    p.add_argument("--birth", required=True, help="the person's birth date, dd/MM/yyyy or YYYY-MM-DD")
    p.add_argument("--as-of", help="answer for this past day, YYYY-MM-DD (default: today)")
    p.add_argument("--url", help="server base URL (default: $INTERCHANGE_URL, else the config's [server] address)")
    p.add_argument("--api-key", help="a facility (or admin) API key (default: $INTERCHANGE_API_KEY)")
    p.add_argument("--json", action="store_true", help="print the server's JSON answer as it is")
    p.set_defaults(func=lambda args: cmd_hi_card(args, config_url))


def cmd_hi_card(args, config_url) -> int:
    import aiohttp

    key = args.api_key or os.environ.get("INTERCHANGE_API_KEY")
    if not key:
        print("interchange hi-card: an API key is needed (--api-key or INTERCHANGE_API_KEY)", file=sys.stderr)
        return EXIT_USAGE
    url = (args.url or os.environ.get("INTERCHANGE_URL") or config_url(args)).rstrip("/")
    params = {"name": args.name, "birth": args.birth, **({"as_of": args.as_of} if args.as_of else {})}

    async def get() -> tuple[int, dict]:
        async with aiohttp.ClientSession() as session:
            headers = {"Authorization": f"Bearer {key}", "Accept": "application/json"}
            async with session.get(f"{url}/api/v1/hi-cards/{args.id}", params=params, headers=headers) as resp:
                try:
                    return resp.status, await resp.json(content_type=None)
                except ValueError:
                    return resp.status, {"status": resp.status, "message": (await resp.text())[:200]}

    status, body = asyncio.run(get())
    if args.json:
        print(json.dumps(body, ensure_ascii=False, indent=2))
    elif status != 200:
        print(f"HTTP {status}: {body.get('code', '')} {body.get('message', '')}".rstrip())
    else:
        print(summary(body))
    return EXIT_OK if status == 200 and body.get("status") == "valid" else EXIT_FAILED


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
