"""The tamper-evident audit log on SQLite and PostgreSQL (the `store` fixture): what is appended,
in the transaction of what it records, and `interchange audit verify` finding edited, removed
and reordered entries (the table edited with SQL, as an intruder would)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import os

import pytest
from sqlalchemy import text, update

from interchange import cli
from interchange.audit import chain as audit
from interchange.kinds import SLUG_RESULT
from interchange.store import REFUSED, Store
from interchange.store.tables import audit_log
from tests.helpers import MST_B, new_dossier, notice_for


async def entries(store: Store) -> list[audit.Entry]:
    return await store.audit.entries()


async def test_receipts_notices_and_key_events_are_chained(store):
    key, _ = await store.keys.create("submitter", mst="0101234565", label="payroll", actor="test:admin")
    received = await store.receipts.save(new_dossier(b"<Hoso n='1'/>"), notice_for)
    refused = await store.receipts.save(
        new_dossier(b"<Hoso n='2'/>", state=REFUSED, problems=[{"code": "XSD"}]), notice_for
    )
    replay = await store.receipts.save(new_dossier(b"<Hoso n='1'/>"), notice_for)
    assert replay.outcome == "replay"
    a = await store.receipts.save(new_dossier(b"<Hoso n='3'/>", idempotency_key="k1"), notice_for)
    conflict = await store.receipts.save(new_dossier(b"<Hoso n='4'/>", idempotency_key="k1"), notice_for)
    assert conflict.outcome == "conflict"
    assert await store.dossiers.add_notice(received.dossier.id, SLUG_RESULT, b"<ThongBao kind='ket-qua'/>")
    assert not await store.dossiers.add_notice(
        received.dossier.id, SLUG_RESULT, b"<ThongBao again/>"
    )  # nothing stored, nothing logged
    assert await store.keys.revoke(key.key_id, actor="test:admin")
    assert await store.keys.revoke(key.key_id)  # already revoked: no second entry
    other, _ = await store.keys.create("ivan", ivan="00123")
    rotated, _ = await store.keys.rotate(other.key_id)
    await store.audit.append(audit.ADMIN_ACTION, {"action": "restore-test"}, actor="test:admin")

    log = await entries(store)
    assert [e.kind for e in log] == [
        "key.created", "dossier.received", "dossier.refused", "dossier.replayed", "dossier.received",
        "dossier.conflict", "notice.stored", "key.revoked", "key.created", "key.rotated", "admin.action",
    ]  # fmt: skip
    assert [e.seq for e in log] == list(range(1, len(log) + 1))
    assert (
        log[0].actor == "test:admin"
        and log[0].data["key_id"] == key.key_id
        and log[0].data["mst"] == "0101234565"
    )
    assert log[8].actor.startswith("os:")  # no actor given: the user running the process
    got = log[1]
    assert got.dossier_id == received.dossier.id and got.actor == "key:a1b2c3d4e5f6"
    assert got.data["sha256"] == hashlib.sha256(b"<Hoso n='1'/>").hexdigest()
    assert got.data["notice"] == {"kind": "tiep-nhan", "sha256": hashlib.sha256(received.notice).hexdigest()}
    assert got.data["so_ho_so"] == received.dossier.so_ho_so and got.data["state"] == "received"
    assert log[2].dossier_id == refused.dossier.id and log[2].data["errors"] == ["XSD"]
    assert log[2].data["notice"]["kind"] == "tu-choi"
    assert (
        log[3].dossier_id == received.dossier.id
        and log[3].data["notice"]["sha256"] == got.data["notice"]["sha256"]
    )
    assert (
        log[5].dossier_id == a.dossier.id
        and log[5].data["sha256"] == hashlib.sha256(b"<Hoso n='4'/>").hexdigest()
    )
    assert log[6].data == {
        "kind": "ket-qua",
        "sha256": hashlib.sha256(b"<ThongBao kind='ket-qua'/>").hexdigest(),
        "size": 26,
    }
    assert log[9].data["revoked"] == other.key_id and log[9].data["key_id"] == rotated.key_id

    assert log[0].prev_hash == audit.GENESIS
    assert all(e.prev_hash == before.hash for before, e in zip(log, log[1:], strict=False))
    assert all(e.computed_hash() == e.hash for e in log)
    assert await store.audit.head() == (log[-1].seq, log[-1].hash)
    report = await store.audit.verify()
    assert report.ok and report.entries == len(log)


async def test_a_receipt_that_fails_leaves_no_entry(store):
    async def broken(_):
        raise RuntimeError("signer down")

    saves = [
        store.receipts.save(new_dossier(f"<Hoso n='{i}'/>".encode()), broken if i == 2 else notice_for)
        for i in range(5)
    ]
    results = await asyncio.gather(*saves, return_exceptions=True)
    assert [isinstance(r, Exception) for r in results] == [False, False, True, False, False]
    log = await entries(store)
    assert sorted(e.dossier_id for e in log) == sorted(
        r.dossier.id for r in results if not isinstance(r, Exception)
    )
    assert (await store.audit.verify()).ok


async def test_concurrent_writers_keep_one_chain(store_url):
    """Two stores on one database (as two server processes), each with its group-commit writer,
    and key events in between: one unbroken chain."""
    first, second = await Store.open(store_url), await Store.open(store_url)
    try:
        saves = [
            (first if i % 2 else second).receipts.save(
                new_dossier(f"<Hoso n='{i}'/>".encode(), **({"owner": f"mst:{MST_B}"} if i % 3 == 0 else {})),
                notice_for,
            )
            for i in range(300)
        ]
        keys = [first.keys.create("auditor") for _ in range(5)] + [
            second.keys.create("admin") for _ in range(5)
        ]
        await asyncio.gather(*saves, *keys)
        report = await first.audit.verify()
        assert report.ok, report.findings[:3]
        assert report.entries == report.head_seq == 310
        log = await first.audit.entries()
        assert len({e.dossier_id for e in log if e.dossier_id}) == 300
        ats = [e.at for e in log]
        assert ats == sorted(ats)  # times taken under the head's lock never go backwards
    finally:
        await first.close()
        await second.close()


# ---- tampering, found by `interchange audit verify` ------------------------------------------


@pytest.fixture
async def six(store) -> Store:
    """A store whose log holds six entries."""
    await store.keys.create("auditor")
    for i in range(4):
        await store.receipts.save(new_dossier(f"<Hoso n='{i}'/>".encode()), notice_for)
    await store.keys.create("admin")
    assert (await store.audit.head())[0] == 6
    return store


async def sql(store: Store, *statements: str) -> None:
    async with store.db.engine.begin() as conn:
        for statement in statements:
            await conn.execute(text(statement))


def audit_verify(store_url: str, tmp_path, *args: str) -> tuple[int, str]:
    config = tmp_path / "audit.toml"
    config.write_text(f'data_dir = "data"\n[store]\nurl = "{store_url}"\n')
    out = io.StringIO()
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("INTERCHANGE_")}
    try:
        with contextlib.redirect_stdout(out):
            code = cli.main(["audit", "verify", "--config", str(config), *args])
    finally:
        os.environ.update(saved)
    return code, out.getvalue()


async def cli_verify(store_url, tmp_path, *args) -> tuple[int, str]:
    return await asyncio.to_thread(audit_verify, store_url, tmp_path, *args)


async def test_intact_log_verifies(six, store_url, tmp_path):
    code, out = await cli_verify(store_url, tmp_path)
    assert code == 0 and out.startswith("OK: 6 audit entries, chain intact up to seq 6"), out
    code, out = await cli_verify(store_url, tmp_path, "--json")
    report = json.loads(out)
    assert code == 0 and report["ok"] and report["entries"] == 6 and report["first"] is None


async def _edit_actor(store):
    await sql(store, "UPDATE audit_log SET actor = 'key:mallory' WHERE seq = 3")


async def _edit_data(store):
    async with store.db.engine.begin() as conn:
        row = (await conn.execute(text("SELECT data FROM audit_log WHERE seq = 3"))).scalar_one()
        data = json.loads(row) if isinstance(row, str) else row
        data["sha256"] = "0" * 64
        await conn.execute(update(audit_log).where(audit_log.c.seq == 3).values(data=data))


async def _remove(store):
    await sql(store, "DELETE FROM audit_log WHERE seq = 3")


async def _swap(store):
    await sql(
        store,
        "UPDATE audit_log SET seq = -1 WHERE seq = 3",
        "UPDATE audit_log SET seq = 3 WHERE seq = 4",
        "UPDATE audit_log SET seq = 4 WHERE seq = -1",
    )


async def _remove_and_renumber(store):
    await sql(
        store,
        "DELETE FROM audit_log WHERE seq = 3",
        *(f"UPDATE audit_log SET seq = {n - 1} WHERE seq = {n}" for n in (4, 5, 6)),
    )


async def _rewrite_with_a_fresh_hash(store):
    entry = (await store.audit.entries(after=2, limit=1))[0]
    forged = audit.Entry(**{**entry.__dict__, "actor": "key:mallory"})
    digest = forged.computed_hash()
    await sql(store, f"UPDATE audit_log SET actor = 'key:mallory', hash = '{digest}' WHERE seq = 3")


async def _cut_the_end(store):
    await sql(store, "DELETE FROM audit_log WHERE seq >= 5")


@pytest.mark.parametrize(
    "tamper, seq, what",
    [
        (_edit_actor, 3, "edited"),
        (_edit_data, 3, "edited"),
        (_remove, 3, "removed"),
        (_swap, 3, "reordered"),
        (_remove_and_renumber, 3, "reordered"),
        (_rewrite_with_a_fresh_hash, 3, "rewritten"),
        (_cut_the_end, 5, "removed"),
    ],
    ids=[
        "edited actor",
        "edited data",
        "removed",
        "swapped",
        "removed and renumbered",
        "rewritten",
        "cut at the end",
    ],
)
async def test_audit_verify_says_where_the_log_was_changed(six, store_url, tmp_path, tamper, seq, what):
    await tamper(six)
    report = await six.audit.verify()
    assert not report.ok
    assert (report.findings[0].seq, report.findings[0].what) == (seq, what), report.findings
    code, out = await cli_verify(store_url, tmp_path)
    assert code == 1 and out.startswith(f"FAILED: first break at seq {seq} ({what})"), out
    code, out = await cli_verify(store_url, tmp_path, "--json")
    first = json.loads(out)["first"]
    assert code == 1 and (first["seq"], first["what"]) == (seq, what)


async def test_swapped_entries_are_named_both(six):
    await _swap(six)
    findings = (await six.audit.verify()).findings
    assert [(f.seq, f.what) for f in findings] == [(3, "reordered"), (4, "reordered")]
    assert "written as seq 4" in findings[0].message and "written as seq 3" in findings[1].message


# ---- excerpts (evidence bundles) ----------------------------------------------------------------


def test_excerpt_checks_hashes_links_and_head():
    log = audit.chain(
        0,
        audit.GENESIS,
        audit_time(),
        [audit.Event("k", "a", {"n": i}, "d" if i in (1, 3) else "x") for i in range(5)],
    )
    mine = [e for e in log if e.dossier_id == "d"]
    links = [e for e in log if e.seq in (3, 5)]
    records = audit.excerpt_records(mine, links, log[-1].seq, log[-1].hash)
    assert [r["record"] for r in records] == ["entry", "entry", "link", "link", "head"]
    assert "data" not in records[2]  # a link never carries another entry's content
    entries, findings = audit.check_excerpt(records)
    assert [e.seq for e in entries] == [2, 4] and findings == []

    edited = [dict(r) for r in records]
    edited[0]["data"] = {"n": 99}
    assert [(f.seq, f.what) for f in audit.check_excerpt(edited)[1]] == [(2, "edited")]
    unlinked = [r for r in records if not (r["record"] == "link" and r["seq"] == 3)]
    assert [(f.seq, f.what) for f in audit.check_excerpt(unlinked)[1]] == [(2, "link")]
    swapped = [records[1], records[0], *records[2:]]
    assert "order" in {f.what for f in audit.check_excerpt(swapped)[1]}
    bad_link = [dict(r) for r in records]
    bad_link[2]["prev_hash"] = "f" * 64
    assert [(f.seq, f.what) for f in audit.check_excerpt(bad_link)[1]] == [(3, "link")]


def audit_time():
    from datetime import UTC, datetime

    return datetime(2026, 3, 2, 2, 30, tzinfo=UTC)
