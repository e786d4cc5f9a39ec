"""The rule layer (SPEC §7), its entry point: judge a received dossier by the rules of
`catalogue` and extract its records (`interchange.records.model`).

`judge(original)` is pure and CPU-only (it runs in worker processes): it re-reads the stored
original bytes of a dossier that passed envelope, signature and schema checks at receipt, with
the same hardened parser, and never verifies signatures again. The rules themselves are by form
(`d02`, `tk1`, `d01`, `m01b`) and by dossier (`procedure`), on the readers of `parsing`;
problems beyond the cap are counted, not built (`context`).
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import date

from lxml import etree

from interchange.config import LimitsConfig
from interchange.errors import Problems
from interchange.intake.envelope import Envelope, FormFile, read_envelope
from interchange.legal.params import LegalParameters, default_parameters
from interchange.rules import catalogue as cat
from interchange.rules.catalogue import D01, D02, M01B, TK1
from interchange.rules.context import Collector, Context, Judgement
from interchange.rules.d01 import judge_d01
from interchange.rules.d02 import judge_d02, judge_d02_rows
from interchange.rules.m01b import judge_m01b
from interchange.rules.parsing import parse_date
from interchange.rules.procedure import judge_envelope
from interchange.rules.tk1 import judge_tk1
from interchange.spool import Spooled, as_bytes
from interchange.trust.leanbody import parse_lean
from interchange.trust.streaming import STREAM_MIN, streamed_rows
from interchange.xmlparse import XmlLimits, parse_xml

__all__ = ["FORM_JUDGES", "Judgement", "judge", "judge_form"]

FORM_JUDGES: dict[str, Callable[[etree._Element, Context], None]] = {
    D02: judge_d02, TK1: judge_tk1, D01: judge_d01, M01B: judge_m01b,
}


def judge(original: bytes | Spooled, *, params: LegalParameters | None = None, limits: LimitsConfig | None = None
          ) -> Judgement:
    """Judge a received dossier (its exact original bytes) by the business rules. Given as its
    file (`Spooled`), it is read a few MiB at a time and its large forms decoded into files, read
    row by row in turn (a 200,000-row dossier is 414 MiB, its form 310 MiB).

    Registration procedures (04/DK-IVAN, 05/SD-IVAN, 06/NG-IVAN) are not judged here (see
    interchange.jobs.registration): their judgement is empty. A dossier that cannot be read
    (it never passed the receipt) raises `interchange.errors.Refusal`.
    """
    with _gc_paused():
        return _judge(original, params or default_parameters(), limits or LimitsConfig())


def judge_read(env: Envelope, forms: list[tuple[FormFile, etree._Element]], *, params: LegalParameters | None = None,
               limits: LimitsConfig | None = None) -> Judgement:
    """`judge` of a dossier the receipt has just read (interchange.intake.pipeline.Read): its
    envelope and its XML forms' trees as signed, not parsed again. The same judgement as `judge`
    of its original (tests/test_judge_read.py)."""
    limits = limits or LimitsConfig()

    def forms_of(ctx: Context) -> None:
        for f, form_root in forms:
            _judge_tree(f, form_root, ctx)

    with _gc_paused():
        return _judged(env, params or default_parameters(), limits, forms_of)


def judge_form(
    code: str,
    form: bytes | etree._Element,
    *,
    params: LegalParameters | None = None,
    created: date | None = None,
    max_errors: int = 100,
) -> Judgement:
    """Judge one form (its bytes or its parsed root) by the rules of its form code."""
    ctx = Context(params=params or default_parameters(), out=Collector(max_errors), created=created)
    root = parse_xml(form, XmlLimits(), form=code).getroot() if isinstance(form, bytes) else form
    with _gc_paused():
        FORM_JUDGES[code](root, ctx)
    return ctx.judgement()


@contextmanager
def _gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off while judging: a large form allocates millions of short-lived
    acyclic objects, and the collector's full passes over them cost about a third of the time."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


# Forms whose rules read rows one at a time: a large one is streamed, never held as a tree.
ROW_JUDGES: dict[str, Callable[[Iterable[tuple[str, etree._Element]], Context], None]] = {D02: judge_d02_rows}


def _envelope(original: bytes | Spooled, xml_limits: XmlLimits, limits: LimitsConfig, cleanup: ExitStack) -> Envelope:
    """The envelope with its files decoded (a large one into a file of its own, which `cleanup`
    removes); a `Spooled` original is read a few MiB at a time, never held whole."""
    tree, lean = parse_lean(original, xml_limits)
    if lean is not None:
        cleanup.callback(lean.close)
    # Envelope problems were judged at receipt: they are not this layer's.
    return read_envelope(tree.getroot(), Problems(cap=limits.max_errors), limits.max_files, lean)


def _judge(original: bytes | Spooled, params: LegalParameters, limits: LimitsConfig) -> Judgement:
    xml_limits = XmlLimits.of(limits)
    with ExitStack() as cleanup:  # the files large forms were decoded into
        env = _envelope(original, xml_limits, limits, cleanup)

        def forms_of(ctx: Context) -> None:
            for f in env.files:
                if not f.is_xml:
                    continue
                if f.code in ROW_JUDGES and len(f.content) >= STREAM_MIN:  # a large form, row by row
                    ROW_JUDGES[f.code](streamed_rows(f.content, f.code, "NoiDung", "LaoDong"), ctx)
                elif f.code in FORM_JUDGES:
                    _judge_tree(f, parse_xml(as_bytes(f.content), xml_limits, form=f.code).getroot(), ctx)

        return _judged(env, params, limits, forms_of)


def _judged(env: Envelope, params: LegalParameters, limits: LimitsConfig, forms_of: Callable[[Context], None]
            ) -> Judgement:
    """The envelope's rules, then each form's (`forms_of`): what `judge` and `judge_read` share."""
    ctx = Context(params=params, out=Collector(limits.max_errors))
    if env.procedure in cat.REGISTRATION_PROCEDURES:
        return ctx.judgement()
    ctx.created = parse_date(env.created or "")
    judge_envelope(env, ctx)
    forms_of(ctx)
    return ctx.judgement()


def _judge_tree(f: FormFile, form_root: etree._Element, ctx: Context) -> None:
    if f.code in FORM_JUDGES and form_root.tag == f.code:  # the schema layer refused any other root at receipt
        FORM_JUDGES[f.code](form_root, ctx)
