"""The code catalogue (interchange.codes): every code the server can emit is in it, and
`interchange codes` lists it.

The sources are read with `ast`: every code put in a Problem, a CertProblem, a Refusal or a
problem+json answer (as a literal or as a `codes.` constant) must be catalogued, and
catalogued codes are written as constants everywhere else.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import interchange
from interchange import codes
from interchange.errors import Layer, Severity
from interchange.rules.catalogue import CATALOGUE as RULES
from interchange.rules.catalogue import every_code, lookup_code
from tests.clitools import run

SRC = Path(interchange.__file__).parent
CODE = re.compile(r"[A-Z][A-Z0-9]*(?:-[A-Z0-9]+)+|XSD|INTERNAL")
# Where the code is among a call's positional arguments.
CODE_ARG = {"_problem": 0, "transport_problem": 0, "CertProblem": 0, "problem": 0, "_refuse": 1,
            "problem_json": 1, "_Target": 1}  # fmt: skip
EXPECTED_LAYER = {"transport_problem": {"transport"}, "CertProblem": {"signature"}, "_refuse": {"envelope"},
                  "problem_json": {"api", "transport"}}  # fmt: skip
JSON_CODE = re.compile(r'"code":\s*"([^"]+)"')


def _sources():
    for path in sorted(SRC.rglob("*.py")):
        yield path.relative_to(SRC).as_posix(), ast.parse(path.read_text(encoding="utf-8"))


def _name(func: ast.expr) -> str | None:
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None


def _code_of(node: ast.expr | None) -> str | None:
    """A code written as a literal (of a code's shape) or as a `codes.NAME` constant (its value)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value if CODE.fullmatch(node.value) else None  # not Unit(code="YN0123A")
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "codes":
        return getattr(codes, node.attr, f"<no constant codes.{node.attr}>")
    return None


def _emitted() -> list[tuple[str, int, str, set[str] | None]]:
    """(file, line, code, layers it may have) for every code the sources emit."""
    found = []
    for name, tree in _sources():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                func = _name(node.func)
                keywords = {k.arg: k.value for k in node.keywords}
                candidates = [keywords.get("code")]
                if func in CODE_ARG and len(node.args) > CODE_ARG[func]:
                    candidates.append(node.args[CODE_ARG[func]])
                if func == "add" and node.args:  # the rule judge's out.add("R-...", ...)
                    value = _code_of(node.args[0])
                    candidates.append(node.args[0] if value and value.startswith("R-") else None)
                layer = keywords.get("layer")
                layers = EXPECTED_LAYER.get(func)
                if isinstance(layer, ast.Attribute) and isinstance(layer.value, ast.Name) and layer.value.id == "Layer":
                    layers = {str(Layer[layer.attr])}
                for c in candidates:
                    code = _code_of(c)
                    if code is not None:
                        found.append((name, node.lineno, code, layers))
            elif isinstance(node, ast.Dict):
                for k, v in zip(node.keys, node.values, strict=True):
                    if isinstance(k, ast.Constant) and k.value == "code" and _code_of(v) is not None:
                        found.append((name, node.lineno, _code_of(v), None))
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                found += [(name, node.lineno, c, None) for c in JSON_CODE.findall(node.value)]
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "codes":
                if node.attr.isupper():
                    found.append((name, node.lineno, _code_of(node), None))
    return found


def test_the_catalogue_is_well_formed():
    assert set(codes.LAYERS) == {"transport", "envelope", "signature", "schema", "rule", "api"}
    for code, entry in codes.CATALOGUE.items():
        assert CODE.fullmatch(code) and not code.startswith("R-"), code
        assert entry.code == code and entry.layer in codes.LAYERS and entry.severity in set(map(str, Severity))
        assert entry.vi.strip() and entry.en.strip() and entry.vi != entry.en, code
        assert getattr(codes, code.replace("-", "_")) == code  # the constant's name is the code's
    assert not set(codes.CATALOGUE) & set(RULES)
    every = every_code()
    assert [c.code for c in every if c.layer == "rule" and c.code.startswith("R-")] == list(RULES)
    assert len({c.code for c in every}) == len(every) == len(codes.CATALOGUE) + len(RULES)
    assert [codes.LAYERS.index(c.layer) for c in every] == sorted(codes.LAYERS.index(c.layer) for c in every)
    assert lookup_code("SIG-SIGNING-TIME").severity == "warning"
    assert lookup_code("R-D02-CAP").vi == RULES["R-D02-CAP"].title_vi
    assert lookup_code("NO-SUCH-CODE") is None


def test_every_code_the_sources_emit_is_catalogued():
    found = _emitted()
    catalogued = {c.code: c for c in every_code()}
    missing = sorted({f"{f}:{line}: {code}" for f, line, code, _ in found if code not in catalogued})
    assert not missing, "codes emitted but not catalogued (add them to interchange/codes.py):\n" + "\n".join(missing)
    wrong = sorted({f"{f}:{line}: {code} is {catalogued[code].layer}, emitted as {layers}"
                    for f, line, code, layers in found if layers and catalogued[code].layer not in layers})  # fmt: skip
    assert not wrong, "\n".join(wrong)
    emitted = {code for _, _, code, _ in found}
    # the scan sees every layer's codes, and nothing is catalogued that nothing emits
    assert {"BODY-EMPTY", "NOT-FOUND", "INTERNAL", "XML-DTD", "ENV-ROOT", "SIG-EXPIRED", "XSD", "REG-MST",
            "R-MST"} <= emitted  # fmt: skip
    assert not set(codes.CATALOGUE) - emitted, "catalogued but never emitted"


def test_codes_are_constants_everywhere():
    literals = []
    for name, tree in _sources():
        if name == "codes.py":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                texts = [node.value, *JSON_CODE.findall(node.value)]
                literals += [f"{name}:{node.lineno}: {t}" for t in texts if t in codes.CATALOGUE]
    assert not literals, "use the interchange.codes constants:\n" + "\n".join(literals)


def test_codes_imports_nothing_of_interchange_but_errors():
    out = subprocess.run(
        [sys.executable, "-c", "import sys, interchange.codes; "
         "print(sorted(m for m in sys.modules if m.startswith('interchange')))"],
        capture_output=True, text=True, check=True, cwd=SRC.parent,
    )  # fmt: skip
    assert out.stdout.strip() == str(["interchange", "interchange.codes", "interchange.errors"])


def test_cli_lists_every_code():
    code, out = run(["codes", "--json"])
    assert code == 0
    listed = json.loads(out)["codes"]
    assert [c["code"] for c in listed] == [c.code for c in every_code()]
    assert set(listed[0]) == {"code", "layer", "severity", "text_vi", "text_en"}
    tu = next(c for c in listed if c["code"] == "SIG-EXPIRED")
    assert tu == {"code": "SIG-EXPIRED", "layer": "signature", "severity": "error",
                  "text_vi": codes.CATALOGUE["SIG-EXPIRED"].vi, "text_en": codes.CATALOGUE["SIG-EXPIRED"].en}  # fmt: skip
    assert {"R-D02-CAP", "NOT-FOUND", "BODY-TOO-LARGE"} <= {c["code"] for c in listed}

    code, out = run(["codes"])
    assert code == 0 and out.startswith(f"{len(listed)} codes\n")
    lines = out.splitlines()
    at = lines.index(next(line for line in lines if line.split()[-1:] == ["SIG-SIGNING-TIME"]))
    assert lines[at].split() == ["signature", "warning", "SIG-SIGNING-TIME"]
    assert lines[at + 1].strip() == codes.CATALOGUE["SIG-SIGNING-TIME"].vi
    assert lines[at + 2].strip() == codes.CATALOGUE["SIG-SIGNING-TIME"].en


@pytest.mark.parametrize("layer", codes.LAYERS)
def test_cli_filters_by_layer(layer):
    code, out = run(["codes", "--json", "--layer", layer])
    listed = json.loads(out)["codes"]
    assert code == 0 and listed and {c["layer"] for c in listed} == {layer}
    assert len(listed) == len(every_code(layer))


def test_cli_refuses_an_unknown_layer(capsys):
    with pytest.raises(SystemExit) as exit_:
        run(["codes", "--layer", "html"])
    assert exit_.value.code == 2 and "invalid choice" in capsys.readouterr().err
