"""`interchange check` with the rule layer, and `interchange rules` (issue #3 item 6)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from lxml import etree

from interchange.config import load_config
from interchange.devkit import samples
from interchange.legal.params import default_parameters
from interchange.rules.catalogue import CATALOGUE
from interchange.store import ACTIVE, RECEIVED, NewDossier, Store, Unit
from interchange.store.units import write_unit
from tests.clitools import dev_setup, no_interchange_env, run

pytestmark = pytest.mark.usefixtures("clean_environ")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A config with a development PKI, and a way to sign dossiers with the demo unit's key."""
    root = tmp_path_factory.mktemp("rules-cli")
    config = root / "config.toml"
    config.write_text('data_dir = "data"\n[trust]\nanchors_dir = "trusted"\ncrl_dir = "crl"\n', encoding="utf-8")
    with no_interchange_env():
        dev_setup(config)
    p12 = root / "data" / "demo" / f"unit-{samples.Unit().mst}.p12"
    assert p12.is_file()

    def signed(name: str, d02: bytes) -> Path:
        unsigned, out_path = root / f"{name}-unsigned.xml", root / f"{name}.xml"
        unsigned.write_bytes(samples.envelope(samples.Unit(), [("D02-TS", "D02-TS.xml", d02)]))
        code, out = run(["--config", str(config), "sign", str(unsigned), "--p12", str(p12), "-o", str(out_path)])
        assert code == 0, out
        return out_path

    return config, signed


def d02_with(**fields: str) -> bytes:
    """A 3-row D02-TS whose second row has `fields`."""
    root = etree.fromstring(samples.d02ts(3))
    row = root.find("NoiDung/LaoDong[2]")
    for tag, text in fields.items():
        row.find(tag).text = text or None
    return etree.tostring(root, xml_declaration=True, encoding="utf-8")


def test_check_runs_the_rules_and_fails_on_a_rule_error(world):
    config, signed = world
    path = signed("bad-pa", d02_with(PA="XX"))
    code, out = run(["--config", str(config), "check", str(path)])
    assert code == 1, out
    assert "rule failed" in out and "R-D02-PA" in out and "/D02-TS/NoiDung/LaoDong[2]/PA" in out
    assert "KHONG_CHAP_NHAN" in out and "PA XX is not in the code list." in out

    code, out = run(["--config", str(config), "check", "--json", str(path)])
    report = json.loads(out)
    assert code == 1 and report["ok"] is False and report["rule_layer"] == "failed"
    assert report["layers"] == {"envelope": "passed", "signature": "passed", "schema": "passed"}
    rule = [p for p in report["problems"] if p["code"] == "R-D02-PA"]
    assert len(rule) == 1 and rule[0]["layer"] == "rule" and rule[0]["severity"] == "error"
    assert rule[0]["value"] == "XX" and rule[0]["form"] == "D02-TS" and isinstance(rule[0]["line"], int)
    assert report["parameters"] == default_parameters().stamp


def test_check_passes_with_a_rule_warning(world):
    config, signed = world
    path = signed("cap", d02_with(TienLuong="90000000"))
    code, out = run(["--config", str(config), "check", str(path)])
    assert code == 0, out
    assert "R-D02-CAP" in out and "warning" in out and "KET_QUA CHAP_NHAN" in out

    code, out = run(["--config", str(config), "check", "--json", str(path)])
    report = json.loads(out)
    assert code == 0 and report["ok"] is True and report["rule_layer"] == "passed"
    assert [p["code"] for p in report["problems"]] == ["R-D02-CAP"]


def test_check_does_not_run_the_rules_after_a_refusal(world, tmp_path):
    config, _ = world
    unsigned = tmp_path / "unsigned.xml"
    unsigned.write_bytes(samples.envelope(samples.Unit(), [("D02-TS", "D02-TS.xml", d02_with(PA="XX"))]))
    code, out = run(["--config", str(config), "check", "--json", str(unsigned)])
    report = json.loads(out)
    assert code == 1 and report["rule_layer"] == "not_run" and report["parameters"] is None
    assert "R-D02-PA" not in {p["code"] for p in report["problems"]}


def test_rules_lists_the_catalogue(world):
    config, _ = world
    code, out = run(["--config", str(config), "rules"])
    assert code == 0
    for rule in CATALOGUE.values():
        assert rule.code in out and rule.title_vi in out and rule.title_en in out

    code, out = run(["--config", str(config), "rules", "--json"])
    report = json.loads(out)
    assert code == 0 and [r["code"] for r in report["rules"]] == list(CATALOGUE)
    cap = next(r for r in report["rules"] if r["code"] == "R-D02-CAP")
    assert cap["severity"] == "warning" and cap["forms"] == ["D02-TS"] and "cap" in cap["title_en"]
    assert report["procedures"]["600"] == {"needs": ["D02-TS"], "may": ["D01-TS", "TK1-TS"], "attachments": True}
    assert report["parameters"]["version"] == default_parameters().version


def test_rules_reads_the_configured_parameters_file(world, tmp_path):
    config, _ = world
    custom = tmp_path / "params.toml"
    text = re.sub(r'^version = ".*"$', 'version = "test.9"', Path(default_parameters().path).read_text(encoding="utf-8"),
                  flags=re.MULTILINE)
    custom.write_text(text, encoding="utf-8")
    cfg = tmp_path / "config.toml"
    cfg.write_text(config.read_text(encoding="utf-8").replace("[trust]", f'[rules]\nparameters = "{custom}"\n[trust]'),
                   encoding="utf-8")
    code, out = run(["--config", str(cfg), "rules"])
    assert code == 0 and "version test.9" in out


def _codes(out: str) -> list[str]:
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


def test_check_registration_refuses_an_unregistered_unit_only_when_asked(world):
    """`check --registration` makes the server's decision (SPEC §9) from the configured store,
    through the same use case the server runs (interchange.receiving)."""
    config, signed = world
    unit = samples.Unit()
    path = signed("registration", samples.d02ts(2, unit=unit))
    code, out = run(["--config", str(config), "check", str(path), "--json"])
    assert code == 0 and "REG-NOT-ACTIVE" not in _codes(out)
    code, out = run(["--config", str(config), "check", str(path), "--json", "--registration"])
    assert code == 1 and _codes(out) == ["REG-NOT-ACTIVE"]
    assert json.loads(out)["layers"]["rule"] == "failed"

    asyncio.run(_register(config, unit))
    code, out = run(["--config", str(config), "check", str(path), "--json", "--registration"])
    assert code == 0 and _codes(out) == [], out
