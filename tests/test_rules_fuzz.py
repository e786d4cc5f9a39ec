"""The rule layer never raises: a form whose values or structure are odd gets problems, not an
exception (an exception would fail the result work again and again, and the dossier would wait
for a KET_QUA that never comes)."""

from __future__ import annotations

import copy

import pytest
from lxml import etree

from interchange.devkit import samples
from interchange.rules.judge import judge_form

ODD = ["", "0", "-1", "99/9999", "13/2026", "00/2026", "1e9", "NaN", "Infinity", "١٢", "１２", "x" * 300, "00/0000",
       "31/02/2020", "29/02/2024", "1.5", "100", "100.0", "101", "9" * 30, "0.0001", " 32.0 ", "01/01/0001",
       "-0", "2026-01", "12/2026/1", "/"]  # fmt: skip
FORMS = {
    "D02-TS": samples.d02ts(3),
    "TK1-TS": samples.tk1ts(2),
    "M01B-HSB": samples.m01bhsb(2),
    "D01-TS": samples.d01ts(2),
}


def _leaves(root) -> list[str]:
    tree = root.getroottree()
    return sorted({tree.getpath(e) for e in root.iter() if isinstance(e.tag, str) and len(e) == 0 and e.tag != "Cky"})


@pytest.mark.parametrize("code", FORMS)
def test_odd_values_give_problems_not_exceptions(code):
    root = etree.fromstring(FORMS[code])
    for path in _leaves(root):
        for value in ODD:
            mutated = copy.deepcopy(root)
            mutated.xpath(path)[0].text = value
            judgement = judge_form(code, mutated)
            assert all(p.code.startswith("R-") for p in judgement.problems), (path, value)


@pytest.mark.parametrize("code", FORMS)
def test_odd_structure_gives_problems_not_exceptions(code):
    root = etree.fromstring(FORMS[code])
    tree = root.getroottree()
    for path in sorted({tree.getpath(e) for e in root.iter() if isinstance(e.tag, str) and e is not root}):
        for op in ("remove", "duplicate", "empty", "nest"):
            mutated = copy.deepcopy(root)
            el = mutated.xpath(path)[0]
            if op == "remove":
                el.getparent().remove(el)
            elif op == "duplicate":
                el.addnext(copy.deepcopy(el))
            elif op == "empty":
                for child in list(el):
                    el.remove(child)
            else:
                etree.SubElement(el, "X").text = "1"
            judge_form(code, mutated)


def test_a_bad_value_is_reported_where_it_is():
    root = etree.fromstring(FORMS["D02-TS"])
    root.find("NoiDung/LaoDong[2]/TuThang").text = "13/2026"
    problems = judge_form("D02-TS", root).problems
    assert [(p.code, p.xpath, p.value) for p in problems if p.code == "R-D02-MONTH"] == [
        ("R-D02-MONTH", "/D02-TS/NoiDung/LaoDong[2]/TuThang", "13/2026")
    ]
