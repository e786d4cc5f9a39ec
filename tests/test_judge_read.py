"""Judging at receipt (interchange.workers): the rule layer on what the receipt has just read
(`Receiver.receive_and_read`, `judge_read`) gives exactly what it gives on the stored original
(`judge`), which the result work falls back to. Checked on dossiers of every form, clean and with
values the rules refuse (but the XSD accepts), and on the ones the receipt streamed (no tree to
judge: nothing is judged at receipt)."""

from __future__ import annotations

import copy
import random
from datetime import UTC, datetime

import pytest
from lxml import etree

from interchange.devkit import samples
from interchange.intake.pipeline import Caller, Receiver
from interchange.rules.judge import judge, judge_read
from tests.helpers import UNIT, dossier

FORMS = {
    "D02-TS": lambda seed: samples.d02ts(6, seed=seed, unit=UNIT),
    "TK1-TS": lambda seed: samples.tk1ts(2, seed=seed),
    "M01B-HSB": lambda seed: samples.m01bhsb(2, seed=seed, unit=UNIT),
    "D01-TS": lambda seed: samples.d01ts(2, seed=seed, unit=UNIT),
}
ODD = ["", "0", "1", "13/2026", "01/2026", "31/02/2020", "29/02/2024", "100", "9" * 12, "001090123456", "1.5",
       "TM", "GL", "X"]


@pytest.fixture
def receiver(cfg) -> Receiver:
    return Receiver.from_config(cfg.trust, cfg.trust_paths, cfg.limits)


def mutated(form: bytes, rng: random.Random) -> bytes:
    """One leaf of the form set to an odd value (the XSD may refuse it: then nothing is judged)."""
    root = etree.fromstring(form)
    tree = root.getroottree()
    leaves = [tree.getpath(e) for e in root.iter() if isinstance(e.tag, str) and len(e) == 0]
    copy_ = copy.deepcopy(root)
    copy_.xpath(rng.choice(leaves))[0].text = rng.choice(ODD)
    return etree.tostring(copy_, xml_declaration=True, encoding="UTF-8")


def same(judged, read) -> None:
    assert [p.as_dict() for p in read.problems] == [p.as_dict() for p in judged.problems]
    assert (read.truncated, read.errors, read.params) == (judged.truncated, judged.errors, judged.params)
    assert read.extracted == judged.extracted


@pytest.mark.parametrize("seed", range(48))
def test_judged_at_receipt_as_from_the_original(world, receiver, seed):
    rng = random.Random(seed)
    codes = rng.sample(sorted(FORMS), rng.randint(1, 2))
    forms = []
    for code in codes:
        form = FORMS[code](seed)
        forms.append((code, f"{code}.xml", mutated(form, rng) if seed % 3 else form))
    body = dossier(world.signer(world.unit), forms=forms, procedure=rng.choice(["600", "602", "630", "603"]))
    outcome, read = receiver.receive_and_read(body, datetime.now(UTC), Caller(role="submitter", mst=UNIT.mst))
    if not outcome.accepted:
        assert read is None
        return
    forms_read = [(f, root) for f, root in read.forms]
    assert all(root is not None for _, root in forms_read)
    same(judge(body), judge_read(read.envelope, forms_read))


def test_a_streamed_form_is_not_read_as_a_tree(world, receiver):
    body = dossier(world.signer(world.unit), rows=1200, seed=7)  # over STREAM_MIN: streamed at receipt
    outcome, read = receiver.receive_and_read(body, datetime.now(UTC), Caller(role="submitter", mst=UNIT.mst))
    assert outcome.accepted and [root for _, root in read.forms] == [None]
