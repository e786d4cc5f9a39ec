"""What real payroll software writes (issue #11, Must have 6; SPEC §2, §3, §10): each shape of
tests/realworld.py through the receipt, the rule layer, the notices, `check` and `verify`."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import pytest

from interchange.devkit import pki, samples
from interchange.intake.pipeline import Caller, Receiver
from interchange.rules.judge import judge
from interchange.trust.dossier_signing import sign_form
from tests.clitools import run
from tests.helpers import NS, UNIT, XML, codes, error_codes, notice_of, run_work
from tests.realworld import SIGNING_TIME, STANDALONE, standalone_form, with_signing_time, xml_as_form_code

pytestmark = pytest.mark.usefixtures("clean_environ")


@pytest.fixture
def receiver(cfg) -> Receiver:
    return Receiver.from_config(cfg.trust, cfg.trust_paths, cfg.limits)


@pytest.fixture
def config_file(world, tmp_path) -> Path:
    """A config for the commands: the test PKI's root as the only trust anchor."""
    path = tmp_path / "config.toml"
    path.write_text(f'data_dir = "data"\n[trust]\nanchors_dir = "{world.anchors_dir}"\ncrl_dir = "crl"\n',
                    encoding="utf-8")
    return path


def cli(config: Path, *argv: str) -> tuple[int, str]:
    return run(["--config", str(config), *argv])


def bad_pa(form: bytes) -> bytes:
    """The form with its first PA code replaced by one that is not in the list (R-D02-PA)."""
    changed = re.sub(rb"<PA>[^<]*</PA>", b"<PA>XX</PA>", form, count=1)
    assert changed != form
    return changed


# ---- MaToKhai `.xml`: the form is known by its root element --------------------------------------


def test_form_with_xml_as_its_code_is_received_as_its_root_element(receiver, world, now):
    out = receiver.receive(xml_as_form_code(world.signer(world.unit)), now, Caller("submitter", mst=UNIT.mst))
    assert out.accepted, out.problems
    assert out.problems == []  # TenFile agrees with the root: nothing to warn of
    assert [f["code"] for f in out.forms] == ["D02-TS"] and out.forms[0]["schema"]
    assert out.envelope["files"][0]["code"] == "D02-TS" and out.envelope["files"][0]["declared_code"] == ".xml"
    assert out.signers[1]["form"] == "D02-TS"


def test_root_element_wins_over_tenfile_with_a_warning(receiver, world, now):
    out = receiver.receive(xml_as_form_code(world.signer(world.unit), name="TK1-TS.xml"), now)
    assert out.accepted, out.problems
    assert codes(out) == ["ENV-FORM-NAME"] and out.problems[0].severity == "warning"
    assert "D02-TS" in out.problems[0].message_en and "TK1-TS" in out.problems[0].message_en
    assert [f["code"] for f in out.forms] == ["D02-TS"]


def test_errors_of_such_a_form_name_the_form(receiver, world, now):
    form = samples.d02ts(3, unit=UNIT).replace(b"<TienLuong>", b"<TienLuong>x", 1)
    out = receiver.receive(xml_as_form_code(world.signer(world.unit), form), now)
    assert out.layers["schema"] == "failed" and codes(out) == ["XSD"]
    assert out.problems[0].form == "D02-TS"

    # the rule layer judges it as a D02-TS too (before: no rules, and "600 needs a D02-TS")
    judged = judge(xml_as_form_code(world.signer(world.unit), bad_pa(samples.d02ts(3, unit=UNIT))))
    found = {(p.code, p.form) for p in judged.problems}
    assert ("R-D02-PA", "D02-TS") in found
    assert not any("PROC" in code for code, _ in found), found


async def test_the_notices_name_the_form(api, world):
    body = xml_as_form_code(world.signer(world.unit), bad_pa(samples.d02ts(3, unit=UNIT)))
    resp = await api.post("/api/v1/dossiers", data=body, headers={**XML, **api.keys["unit"]})
    assert resp.status == 202
    tx = resp.headers["X-Transaction-Id"]
    assert await run_work(api) == ["result:done"]
    resp = await api.get(f"/api/v1/dossiers/{tx}/notices/ket-qua", headers=api.keys["unit"])
    root = notice_of(await resp.read())
    forms = {loi.findtext(f"{{{NS}}}ToKhai") for loi in root.iter(f"{{{NS}}}Loi")}
    assert forms == {"D02-TS"}


async def test_a_schema_refusal_notice_names_the_form(api, world):
    form = samples.d02ts(3, unit=UNIT).replace(b"<TienLuong>", b"<TienLuong>x", 1)
    resp = await api.post("/api/v1/dossiers", data=xml_as_form_code(world.signer(world.unit), form),
                          headers={**XML, **api.keys["unit"]})
    assert resp.status == 422
    root = notice_of(await resp.read())
    assert error_codes(root) == ["XSD"]
    assert [loi.findtext(f"{{{NS}}}ToKhai") for loi in root.iter(f"{{{NS}}}Loi")] == ["D02-TS"]


# ---- SigningTime by local name under an Object -------------------------------------------------


@pytest.mark.parametrize("shape", ["property", "properties"])
def test_signing_time_found_under_object_in_any_namespace(receiver, world, now, shape):
    signed = xml_as_form_code(world.signer(world.unit))
    out = receiver.receive(with_signing_time(signed, shape), now)
    assert out.accepted, out.problems  # the Object is unsigned: rewriting it breaks nothing
    assert out.signers[0]["signing_time"] == SIGNING_TIME
    form = standalone_form("D02-TS", world.signer(world.unit))
    out = receiver.receive_form(with_signing_time(form, shape, location="Cky"), now)
    assert out.accepted and out.signers[0]["signing_time"] == SIGNING_TIME


# ---- standalone signed forms: check and verify --------------------------------------------------


@pytest.mark.parametrize("code", sorted(STANDALONE))
def test_check_and_verify_a_standalone_form(world, tmp_path, config_file, code):
    path = tmp_path / f"{code}.xml"
    path.write_bytes(standalone_form(code, world.signer(world.unit)))
    status, out = cli(config_file, "check", str(path))
    assert status == 0, out
    assert "ENV-ROOT" not in out and f"standalone {code}" in out
    assert "signature passed, schema passed, rule passed" in out
    status, out = cli(config_file, "check", "--json", str(path))
    report = json.loads(out)
    assert status == 0 and report["ok"] and report["standalone_form"] == code
    assert report["signers"][0]["mst"] == UNIT.mst and report["signers"][0]["form"] == code
    status, out = cli(config_file, "verify", str(path))
    assert status == 0 and f"{code}: VALID" in out, out


def test_check_of_a_standalone_form_runs_its_rules_and_its_schema(world, tmp_path, config_file):
    signer = world.signer(world.unit)
    rule = tmp_path / "rule.xml"
    rule.write_bytes(sign_form(bad_pa(samples.d02ts(3, unit=UNIT)), signer))
    status, out = cli(config_file, "check", "--json", str(rule))
    report = json.loads(out)
    assert status == 1 and report["rule_layer"] == "failed"
    assert "R-D02-PA" in {p["code"] for p in report["problems"]}

    schema = tmp_path / "schema.xml"
    schema.write_bytes(sign_form(samples.d02ts(3, unit=UNIT).replace(b"<TienLuong>", b"<TienLuong>x", 1), signer))
    status, out = cli(config_file, "check", "--json", str(schema))
    report = json.loads(out)
    assert status == 1 and report["layers"] == {"signature": "passed", "schema": "failed"}
    assert {p["code"] for p in report["problems"]} == {"XSD"}

    tampered = tmp_path / "tampered.xml"
    tampered.write_bytes(standalone_form("D02-TS", signer).replace(b"<STT>1</STT>", b"<STT>9</STT>", 1))
    status, out = cli(config_file, "check", str(tampered))
    assert status == 1 and "SIG-DIGEST" in out and "signature failed" in out


def test_check_at_a_time_like_verify(world, tmp_path, config_file):
    path = tmp_path / "signed.xml"
    path.write_bytes(xml_as_form_code(world.signer(world.unit)))
    assert cli(config_file, "check", str(path))[0] == 0
    after = (world.unit.cert.not_valid_after_utc + timedelta(days=1)).isoformat()
    status, out = cli(config_file, "check", "--at", after, str(path))
    assert status == 1 and "SIG-EXPIRED" in out and "REFUSED" in out
    status, out = cli(config_file, "verify", "--at", after, str(path))
    assert status == 1 and "SIG-EXPIRED" in out
    status, _ = cli(config_file, "check", "--at", "yesterday", str(path))
    assert status == 2


# ---- verify --json: the cryptography apart from the trust ---------------------------------------


def test_verify_json_says_intact_apart_from_trusted(world, tmp_path, config_file):
    good, untrusted, broken = tmp_path / "good.xml", tmp_path / "untrusted.xml", tmp_path / "broken.xml"
    good.write_bytes(standalone_form("D02-TS", world.signer(world.unit)))
    rogue_unit = pki.issue_unit_cert(world.rogue_ca, UNIT.mst, UNIT.name)
    untrusted.write_bytes(standalone_form("D02-TS", world.signer(rogue_unit)))
    broken.write_bytes(good.read_bytes().replace(b"<STT>1</STT>", b"<STT>9</STT>", 1))

    def signature(path: Path) -> tuple[int, dict]:
        status, out = cli(config_file, "verify", "--json", str(path))
        return status, json.loads(out)["signatures"][0]

    status, sig = signature(good)
    assert status == 0 and sig["valid"] and sig["signature_intact"] is True and sig["certificate_trusted"] is True
    status, sig = signature(untrusted)
    assert status == 1 and not sig["valid"]
    assert sig["signature_intact"] is True and sig["certificate_trusted"] is False
    status, sig = signature(broken)
    assert status == 1 and not sig["valid"]
    assert sig["signature_intact"] is False and sig["certificate_trusted"] is True
    status, out = cli(config_file, "verify", str(untrusted))
    assert "NOT VALID (signature intact; certificate NOT trusted)" in out


# ---- a body whose root is not Hoso: 422 ENV-ROOT, not 403 ---------------------------------------


@pytest.mark.parametrize("key", ["unit", "ivan", "admin"])
@pytest.mark.parametrize("body", ["standalone-form", "other-root"])
async def test_a_body_whose_root_is_not_hoso_is_422_env_root(api, world, key, body):
    data = standalone_form("D02-TS", world.signer(world.unit)) if body == "standalone-form" else b"<BaoCao><A/></BaoCao>"
    resp = await api.post("/api/v1/dossiers", data=data, headers={**XML, **api.keys[key]})
    notice = await resp.read()
    assert resp.status == 422, notice[:300]
    found = error_codes(notice_of(notice))
    assert "ENV-ROOT" in found and "AUTH-UNIT-MISMATCH" not in found and "AUTH-IVAN-MISMATCH" not in found


# ---- a dossier whose embedded form is longer than the text limit (every large real one) ---------


def test_check_and_verify_a_dossier_whose_base64_is_over_the_text_limit(world, tmp_path, config_file):
    """A 50,000-row D02-TS is ~80 MB of base64 in one NoiDungFile, over `max_text_length`: it is
    exempt at receipt, and must be for the rule layer (`check`, the server's KET_QUA) and `verify`
    too. Here the limit is made small instead of the dossier large."""
    config_file.write_text(config_file.read_text() + "[limits]\nmax_text_length = 2000\n", encoding="utf-8")
    path = tmp_path / "large.xml"
    path.write_bytes(xml_as_form_code(world.signer(world.unit), samples.d02ts(20, unit=UNIT)))
    assert len(path.read_bytes()) > 4 * 2000
    status, out = cli(config_file, "check", str(path))
    assert status == 0 and "rule passed" in out, out
    status, out = cli(config_file, "verify", str(path))
    assert status == 0 and "Hoso: VALID" in out, out
