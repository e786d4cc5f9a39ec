"""A large form validated in a forked helper beside the streaming pass (interchange/trust/aside.py,
issue #13 item 4): the verdict is that of the single pass (`iterparse(schema=...)`), for valid
and invalid forms alike; the helper is always waited for (no process left behind), ended when
its verdict is not wanted, and dies with its parent (a worker killed past its budget)."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime

import pytest
from lxml import etree

from interchange import server
from interchange.devkit import samples
from interchange.forms.schema import default_schema_set
from interchange.intake.pipeline import Caller
from interchange.spool import LARGE
from interchange.trust import streaming
from interchange.trust.aside import validate_aside
from interchange.workers import ReceiptWorkers
from interchange.xmlparse import XmlLimits
from tests.helpers import UNIT, dossier, in_file

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the helper is forked on Linux only")

LIMITS = XmlLimits()
PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True, remove_comments=True)
FORM = samples.d02ts(300, seed=21, unit=UNIT)

# Each: a change to the form, as (old, new, count); None: the form as it is.
CHANGES = {
    "valid": None,
    "a row's number not a number": (b"<STT>7</STT>", b"<STT>x</STT>", 1),
    "the last row's number not a number": (b"<STT>300</STT>", b"<STT>x</STT>", 1),
    "an element the schema does not know": (b"<HoTen>", b"<Unknown/><HoTen>", 1),
    "an element missing in the header": (b"<SoTheBHYT>", b"<!-- -->", 1),  # its end tag left: a syntax error
    "a row's element left out": (b"<HoTen>", b"<HoTenX>", 0),
    "a salary with letters": (b"<TienLuong>", b"<TienLuong>abc", 1),
    "cut short": None,
}


def form_for(case: str) -> bytes:
    if case == "cut short":
        return FORM[: len(FORM) * 2 // 3]
    change = CHANGES[case]
    if change is None:
        return FORM
    old, new, count = change
    if count == 0:  # the first row's element renamed, end tag too
        return FORM.replace(old, new, 1).replace(b"</HoTen>", b"</HoTenX>", 1)
    assert old in FORM, case
    return FORM.replace(old, new, count)



def gone(pid: int) -> bool:
    """The process no longer exists (or only as a zombie, waiting for init to reap it)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def spliced_digest(form: streaming.StreamedForm) -> bytes:
    return form.splice.digest(etree.tostring(form.root.getroottree(), method="c14n"), "sha256")


@pytest.mark.parametrize("case", list(CHANGES))
def test_the_helper_gives_the_single_pass_verdict(case, tmp_path, monkeypatch):
    s = default_schema_set().streaming("D02-TS")
    data = in_file(form_for(case), tmp_path)
    helpers: list[int] = []
    real = streaming.validate_aside

    def counted(*args):
        aside = real(*args)
        helpers.append(aside.pid)
        return aside

    monkeypatch.setattr(streaming, "validate_aside", counted)
    with s.lock:
        one = streaming.stream_form(data, LIMITS, s.schema, s.row_tags, longest_local_name=s.longest_local_name)
        assert not helpers
        two = streaming.stream_form(data, LIMITS, s.schema, s.row_tags, longest_local_name=s.longest_local_name,
                                    aside_from=1)
    assert len(helpers) == 1 and gone(helpers[0])  # waited for, whatever the verdict
    assert (one is None) == (two is None)
    assert (one is not None) == (case == "valid")
    if one is not None:
        assert one.rows == two.rows == 300
        whole = hashlib.sha256(etree.tostring(etree.fromstring(FORM, PARSER).getroottree(), method="c14n")).digest()
        assert spliced_digest(one) == spliced_digest(two) == whole


def test_no_helper_below_the_size_or_for_bytes_or_without_a_schema(tmp_path, monkeypatch):
    s = default_schema_set().streaming("D02-TS")
    calls: list[tuple] = []
    monkeypatch.setattr(streaming, "validate_aside", lambda *a: calls.append(a))
    with s.lock:
        assert streaming.stream_form(in_file(FORM, tmp_path), LIMITS, s.schema, s.row_tags,
                                     aside_from=len(FORM) + 1) is not None
        assert streaming.stream_form(FORM, LIMITS, s.schema, s.row_tags, aside_from=1) is not None
    assert streaming.stream_form(in_file(FORM, tmp_path), LIMITS, None, s.row_tags, aside_from=1) is not None
    assert calls == []


def test_a_form_failing_the_byte_gates_ends_its_helper(tmp_path, monkeypatch):
    """The helper starts before the byte gates; when they refuse the form, it is ended and waited for."""
    s = default_schema_set().streaming("D02-TS")
    doctype = FORM.replace(b"<D02-TS", b'<!DOCTYPE D02-TS [<!ENTITY a "b">]>\n<D02-TS', 1)
    helpers: list[int] = []
    real = streaming.validate_aside
    monkeypatch.setattr(streaming, "validate_aside", lambda *a: helpers.append(real(*a)) or helpers[-1])
    with s.lock:
        assert streaming.stream_form(in_file(doctype, tmp_path), LIMITS, s.schema, s.row_tags, aside_from=1) is None
    assert len(helpers) == 1 and gone(helpers[0].pid)


def test_cancel_ends_a_helper_that_is_still_reading(tmp_path):
    """A helper blocked on its input (a FIFO nobody writes) is killed and waited for by cancel."""
    fifo = tmp_path / "form.fifo"
    os.mkfifo(fifo)
    s = default_schema_set().streaming("D02-TS")
    aside = validate_aside(str(fifo), s.schema)
    time.sleep(0.2)
    assert not gone(aside.pid)
    started = time.monotonic()
    aside.cancel()
    assert gone(aside.pid) and time.monotonic() - started < 5


def test_a_helper_that_cannot_read_its_file_says_not_valid(tmp_path):
    s = default_schema_set().streaming("D02-TS")
    aside = validate_aside(str(tmp_path / "missing.xml"), s.schema)
    assert aside.valid() is False
    assert gone(aside.pid)


def test_a_helper_dies_with_its_parent(tmp_path):
    """A worker killed past its CPU budget (SIGKILL) takes its helper with it."""
    fifo = tmp_path / "form.fifo"
    os.mkfifo(fifo)
    script = textwrap.dedent(f"""
        import time
        from interchange.forms.schema import default_schema_set
        from interchange.trust.aside import validate_aside
        s = default_schema_set().streaming("D02-TS")
        print(validate_aside({str(fifo)!r}, s.schema).pid, flush=True)
        time.sleep(120)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        helper = int(parent.stdout.readline())
        time.sleep(0.2)
        assert not gone(helper)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    deadline = time.monotonic() + 10
    while not gone(helper) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gone(helper)


TOKENS = [b"x", b"", b"1", b"-", b"<Extra/>", b"&amp;", b"&#65;", b"&x;", b"<!-- c -->", b"<?pi x?>", b"\xc3\xa9", b"<", b"</LaoDong>"]


def mutated(rng: random.Random, form: bytes) -> bytes:
    """`form` with one to three random changes: a text replaced, a line dropped or doubled, an
    attribute or a child added to a start tag (well-formed or not, valid or not)."""
    d = bytearray(form)
    for _ in range(rng.randint(1, 3)):
        kind, pos = rng.random(), rng.randrange(len(d))
        if kind < 0.4:
            a = d.find(b">", pos)
            b = d.find(b"<", a)
            if 0 <= a < b:
                d[a + 1 : b] = rng.choice(TOKENS)
        elif kind < 0.7:
            a, b = d.rfind(b"\n", 0, pos), d.find(b"\n", pos)
            if 0 <= a < b:
                if rng.random() < 0.5:
                    del d[a:b]
                else:
                    d[a:a] = d[a:b]
        else:
            a = d.find(b"<", pos)
            if a >= 0 and d[a + 1 : a + 2] not in (b"/", b"?", b"!"):
                e = d.find(b">", a)
                d[e:e] = b' q="1"' if rng.random() < 0.7 else b"/"
    return bytes(d)


@pytest.mark.parametrize("seed", range(4))
def test_the_helper_and_the_single_pass_agree_on_mutated_forms(seed, tmp_path):
    """Differential: on randomly changed forms (syntax errors, schema errors, both, neither) the
    pass with its helper gives exactly the single pass's verdict and digest."""
    s = default_schema_set().streaming("D02-TS")
    rng = random.Random(seed)
    form = samples.d02ts(40, seed=seed, unit=UNIT)
    verdicts = set()
    for i in range(25):
        data = in_file(mutated(rng, form), tmp_path)
        with s.lock:
            one = streaming.stream_form(data, LIMITS, s.schema, s.row_tags, longest_local_name=s.longest_local_name)
            two = streaming.stream_form(data, LIMITS, s.schema, s.row_tags, longest_local_name=s.longest_local_name,
                                        aside_from=1)
        assert (one is None) == (two is None), (seed, i)
        if one is not None:
            assert spliced_digest(one) == spliced_digest(two)
        verdicts.add(one is None)
    assert verdicts == {True, False}  # the mutations made both kinds


def children_cpu_ticks(pids: list[int]) -> int:
    """CPU of the processes' children that ended (cutime + cstime in /proc/<pid>/stat), in ticks."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as fh:
            after = fh.read().rsplit(")", 1)[1].split()
        total += int(after[13]) + int(after[14])
    return total


async def test_a_worker_process_validates_a_large_form_aside(world, cfg):
    """In a real worker process (spawned, with its own threads) a form past spool.LARGE is decoded
    into a file, streamed, and validated by a helper the worker forks and reaps: its CPU shows in
    the worker's children's. A valid dossier is received; one with a row not as the XSD has it,
    signed all the same, gets the schema's error at its XPath (the tree path's, after the helper's
    verdict)."""
    signer = world.signer(world.unit)
    valid = dossier(signer, rows=7000, seed=8)
    form = samples.d02ts(7000, seed=8, unit=UNIT).replace(b"<STT>9</STT>", b"<STT>x</STT>", 1)
    invalid = dossier(signer, forms=[("D02-TS", "D02-TS.xml", form)])
    assert len(form) > LARGE  # decoded into a file of its own, streamed from there
    settings = dataclasses.replace(server.worker_settings(cfg), validate_aside_from=1)
    workers = ReceiptWorkers(settings, 2)
    caller, now = Caller(role="submitter", mst=UNIT.mst), datetime.now(UTC)
    try:
        await workers.start()
        pids = workers.pids()
        before = children_cpu_ticks(pids)
        got = await workers.receive(valid, now, caller)
        assert got.accepted, got.problems
        middle = children_cpu_ticks(pids)
        assert middle > before  # a helper ran and was reaped
        refused = await workers.receive(invalid, now, caller)
        assert not refused.accepted and refused.layers["schema"] == "failed"
        assert [(p.code, p.xpath) for p in refused.problems] == [("XSD", "/D02-TS/NoiDung/LaoDong[9]/STT")]
        assert children_cpu_ticks(pids) > middle
        assert workers.pids() == pids  # no worker lost on the way
    finally:
        workers.close()


@pytest.mark.parametrize("case", list(CHANGES))
def test_lxml_validates_for_a_parser_with_a_target_as_the_helper_needs(case, tmp_path):
    """What the helper rests on (lxml 6.2.0): a parser with a target that builds nothing and a
    schema, given an open file, validates it as `iterparse(schema=...)` does, raising at a syntax
    error and logging each validity error. (Fed in chunks it does not validate; given a path it
    takes a missing file for an empty parse: the helper does neither.)"""

    class NoTree:
        def close(self):
            return None

    s = default_schema_set().streaming("D02-TS")
    path = tmp_path / "form.xml"
    path.write_bytes(form_for(case))
    parser = etree.XMLParser(target=NoTree(), schema=s.schema, resolve_entities=False, no_network=True,
                             huge_tree=True)  # fmt: skip
    try:
        with path.open("rb") as source:
            etree.parse(source, parser)
        valid = not any(e.level >= etree.ErrorLevels.ERROR for e in parser.error_log)
    except etree.XMLSyntaxError:
        valid = False
    try:
        s.schema.assertValid(etree.parse(str(path), PARSER))
        whole = True
    except (etree.DocumentInvalid, etree.XMLSyntaxError):
        whole = False
    assert valid is whole is (case == "valid")
