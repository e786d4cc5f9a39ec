"""docs/integration.md says what the code does: every `interchange` command it shows parses
with the real parser, every code it names is in the catalogue with the layer it gives, its
notice examples are well-formed, its links lead to files of the repository."""

from __future__ import annotations

import contextlib
import io
import re
import shlex

import pytest
from lxml import etree

from interchange.cli import build_parser
from interchange.config import REPO_ROOT
from interchange.rules.catalogue import every_code

DOC = REPO_ROOT / "docs" / "integration.md"
CATALOGUE = {c.code: c for c in every_code(None)}
# docs/deployment.md, the operator's guide, is written in another branch of this issue (#11)
ELSEWHERE = {"deployment.md"}


def shell_lines() -> list[str]:
    text = DOC.read_text(encoding="utf-8")
    lines = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        lines += [ln.strip() for ln in block.splitlines() if ln.strip().startswith("interchange ")]
    return lines


def test_every_command_shown_parses():
    lines = shell_lines()
    assert len(lines) >= 15
    for line in lines:
        words = shlex.split(line, comments=True)
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            try:
                build_parser().parse_args(words[1:])
            except SystemExit:
                pytest.fail(f"docs/integration.md shows `{line}`: {err.getvalue().strip()}")


def test_every_code_named_is_in_the_catalogue_with_its_layer():
    text = DOC.read_text(encoding="utf-8")
    rows = re.findall(r"^\| `([A-Z][A-Z0-9-]+)`(?: \(warning\))? \| (\w+) \|", text, re.M)
    assert len(rows) >= 15
    for code, layer in rows:
        assert code in CATALOGUE, f"{code} is not a code the server emits"
        assert CATALOGUE[code].layer == layer, f"{code}: the doc says layer {layer}, the catalogue {CATALOGUE[code].layer}"
    shown = set(re.findall(r"<Ma>([^<]+)</Ma>", text))
    shown |= set(re.findall(r"\| `\d{3}` \| (?:TU_CHOI )?`([A-Z][A-Z0-9-]+)`", text))
    shown |= set(re.findall(r"`\d{3}` `([A-Z][A-Z0-9-]+)`", text))
    assert {"SIG-MISSING", "R-D02-PA", "NOT-FOUND"} <= shown
    assert sorted(shown - set(CATALOGUE)) == []


def test_the_notice_examples_are_xml():
    text = DOC.read_text(encoding="utf-8")
    blocks = re.findall(r"```xml\n(.*?)```", text, re.S)
    assert len(blocks) >= 3
    whole = [b for b in blocks if b.lstrip().startswith("<ThongBao")]
    assert whole, "one example is a whole notice"
    for block in whole:
        etree.fromstring(re.sub(r"<Signature .*?</Signature>", "", block, flags=re.S).encode())


def test_links_lead_to_files_of_the_repository():
    text = DOC.read_text(encoding="utf-8")
    links = {m for m in re.findall(r"\]\(([^)#\s]+)\)", text) if "://" not in m}
    assert "architecture.md" in links and "deployment.md" in links
    missing = sorted(p for p in links - ELSEWHERE if not (DOC.parent / p).exists())
    assert missing == []
