"""`interchange check --registration` makes the server's registration decision (SPEC §9) from the
configured store, through the same use case the server runs (interchange.receiving)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from datetime import UTC, datetime

import pytest

from interchange.config import load_config
from interchange.devkit import samples
from interchange.store import ACTIVE, RECEIVED, NewDossier, Store, Unit
from interchange.store.units import write_unit
from tests.clitools import dev_setup, no_interchange_env, run

pytestmark = pytest.mark.usefixtures("clean_environ")


@pytest.fixture(scope="module")
def signed(tmp_path_factory):
    root = tmp_path_factory.mktemp("check-registration")
    config = root / "config.toml"
    config.write_text('data_dir = "data"\n[trust]\nanchors_dir = "trusted"\ncrl_dir = "crl"\n', encoding="utf-8")
    with no_interchange_env():
        dev_setup(config)
    unit = samples.Unit()
    unsigned, path = root / "unsigned.xml", root / "signed.xml"
    unsigned.write_bytes(samples.envelope(unit, [("D02-TS", "D02-TS.xml", samples.d02ts(2, unit=unit))]))
    p12 = root / "data" / "demo" / f"unit-{unit.mst}.p12"
    code, out = run(["--config", str(config), "sign", str(unsigned), "--p12", str(p12), "-o", str(path)])
    assert code == 0, out
    return config, path, unit


def codes(out: str) -> list[str]:
    return [p["code"] for p in json.loads(out)["problems"]]


async def _register(config, unit) -> None:
    """The unit's row as an accepted 04/DK-IVAN leaves it (the registration work is tested elsewhere)."""
    store = await Store.open(load_config(config).store_url)
    try:
        now = datetime.now(UTC)
        registration = NewDossier(
            id=uuid.uuid4().hex, state=RECEIVED, owner=f"mst:{unit.mst}", submitter_key_id="k",
            original=b"<Hoso/>", sha256=hashlib.sha256(b"<Hoso/>").digest(), received_at=now,
            office_code="TEST", unit_mst=unit.mst, procedure="04/DK-IVAN",
        )  # fmt: skip

        async def notice(_dossier) -> bytes:
            return b"<ThongBao/>"

        saved = await store.receipts.save(registration, notice)
        async with store.db.writing() as conn:
            await write_unit(conn, store.db.insert, Unit(
                mst=unit.mst, unit_code=unit.code, name=unit.name, state=ACTIVE, email=None, address=None,
                contact=None, result_channel=None, dossier_id=saved.dossier.id, updated_at=now,
            ))  # fmt: skip
    finally:
        await store.close()


def test_check_refuses_an_unregistered_unit_only_when_asked(signed):
    config, path, unit = signed
    code, out = run(["--config", str(config), "check", str(path), "--json"])
    assert code == 0 and "REG-NOT-ACTIVE" not in codes(out)
    code, out = run(["--config", str(config), "check", str(path), "--json", "--registration"])
    assert code == 1 and codes(out) == ["REG-NOT-ACTIVE"]
    assert json.loads(out)["layers"]["rule"] == "failed"

    asyncio.run(_register(config, unit))
    code, out = run(["--config", str(config), "check", str(path), "--json", "--registration"])
    assert code == 0 and codes(out) == [], out
