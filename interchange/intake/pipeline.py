"""One dossier's walk up to the receipt decision: envelope -> signature -> schema.

Pure: bytes and a caller in, an outcome out; no HTTP, no database. The same `Receiver`
serves the server (inside worker processes), `interchange check` and the tests. A failed
layer stops the layers after it; the outcome says which layers ran.
"""

from __future__ import annotations

import hashlib
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from datetime import datetime

from lxml import etree

from interchange import codes
from interchange.config import REPO_ROOT, LimitsConfig, TrustConfig, TrustPaths
from interchange.errors import LAYER_ORDER, Layer, Problem, Problems, Refusal
from interchange.forms.schema import SchemaSet
from interchange.intake.envelope import Envelope, FormFile, read_envelope
from interchange.spool import Spooled, as_bytes, sha256_of
from interchange.trust.anchors import TrustStore
from interchange.trust.c14nstream import Splice, SpliceError
from interchange.trust.leanbody import parse_lean
from interchange.trust.streaming import STREAM_MIN, stream_form
from interchange.trust.xmldsig import SignatureReport, verify_document
from interchange.xmlparse import XmlLimits, parse_xml

ENVELOPE_SIGNATURE_AT = "CKy_Dvi"
FORM_SIGNATURE_AT = "Cky"


@dataclass(frozen=True)
class Caller:
    """Who sends: the API key's binding (SPEC §5)."""

    role: str  # submitter | ivan | admin
    mst: str | None = None
    ivan: str | None = None


@dataclass
class Outcome:
    accepted: bool
    sha256: bytes
    size: int
    forbidden: bool = False  # the dossier is not the caller's to send (403)
    envelope: dict = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    truncated: int = 0
    layers: dict[str, str] = field(default_factory=dict)
    signers: list[dict] = field(default_factory=list)
    forms: list[dict] = field(default_factory=list)
    judgement: object | None = None  # the rule layer's, when judged at receipt (interchange.workers)
    # The CRLs and OCSP responses the signers' revocation names by SHA-256: {hex: (kind, DER)}
    revocation_data: dict[str, tuple[str, bytes]] = field(default_factory=dict)

    def add_signer(self, report: SignatureReport) -> None:
        """A signature's report, its revocation data named by digest (kept once, not per dossier)."""
        self.signers.append(report.as_dict(revocation_refs=True))
        if report.revocation is not None:
            self.revocation_data.update(report.revocation.data())

    @property
    def failed_layer(self) -> str | None:
        return next((k for k, v in self.layers.items() if v == "failed"), None)


class Receiver:
    """Everything loaded once per process: trust anchors, schemas, limits."""

    def __init__(self, trust: TrustStore, schemas: SchemaSet, limits: XmlLimits, *, max_files: int = 50,
                 max_errors: int = 100, legacy_sha1: bool = False, validate_aside_from: int = 0):
        self.trust = trust
        # a form file of at least this many bytes is validated in a forked helper beside the
        # streaming pass (trust/aside.py); 0: never
        self.validate_aside_from = validate_aside_from
        self.schemas = schemas
        self.limits = limits
        self.max_files = max_files
        self.max_errors = max_errors
        self.legacy_sha1 = legacy_sha1

    @classmethod
    def from_config(cls, trust: TrustConfig, paths: TrustPaths, limits: LimitsConfig, *, fetch: bool = True,
                    validate_aside_from: int = 0) -> Receiver:
        """From `[trust]` (with its folders resolved) and `[limits]`; `fetch=False`: no revocation
        data fetched (judging a past moment); `validate_aside_from`: see `__init__`."""
        return cls(
            TrustStore.from_config(trust, paths, fetch=fetch),
            SchemaSet(REPO_ROOT / "xsd", max_readable_bytes=500_000),
            XmlLimits.of(limits),
            max_files=limits.max_files,
            max_errors=limits.max_errors,
            legacy_sha1=trust.legacy_sha1,
            validate_aside_from=validate_aside_from,
        )

    def receive(self, body: bytes | Spooled, at: datetime, caller: Caller | None = None, *, stream: bool = True,
                aside: bool = True) -> Outcome:
        """The receipt's layers on a body (its bytes, or its file when large). Large texts and forms
        are read in bounded memory (`trust/leanbody.py`, `trust/streaming.py`) unless `stream` is
        False; the verdict is the same either way. `aside` False: no form is validated in a forked
        helper this time (`validate_aside_from`; the cores are busy)."""
        return self.receive_and_read(body, at, caller, stream=stream, aside=aside)[0]

    def receive_and_read(self, body: bytes | Spooled, at: datetime, caller: Caller | None = None, *,
                         stream: bool = True, aside: bool = True) -> tuple[Outcome, Read | None]:
        """`receive`, and what it read of an accepted dossier (None otherwise): for the rule layer
        to judge without parsing the dossier again."""
        read: list[Read] = []
        with ExitStack() as cleanup:  # the files a large body's forms were decoded into
            try:
                out = self._receive(body, at, caller, stream, cleanup, read, aside)
            except SpliceError:  # a reduced tree that does not fit its document: never a verdict
                read.clear()
                out = self._receive(body, at, caller, False, cleanup, read, aside)
        return out, (read[0] if read else None)

    def _receive(self, body: bytes | Spooled, at: datetime, caller: Caller | None, stream: bool,
                 cleanup: ExitStack, read: list[Read], aside: bool = True) -> Outcome:
        out = Outcome(accepted=False, sha256=sha256_of(body), size=len(body))
        layers = {str(layer): "not_run" for layer in LAYER_ORDER if layer != Layer.RULE}
        out.layers = layers

        def fail(layer: Layer, problems: Problems) -> Outcome:
            layers[str(layer)] = "failed"
            out.problems, out.truncated = problems.items, problems.truncated
            return out

        # Envelope: well-formed, safe, the Hoso structure, the embedded files.
        problems = Problems(cap=self.max_errors)
        try:
            tree, lean = parse_lean(body, self.limits, cut=stream)
        except Refusal as refusal:
            problems.extend(refusal.problems)
            return fail(Layer.ENVELOPE, problems)
        if lean is not None:
            cleanup.callback(lean.close)
        root = tree.getroot()
        problems.extend(self.schemas.validate_envelope(root, cap=self.max_errors))
        env = read_envelope(root, problems, self.max_files, lean)
        out.envelope = env.summary()
        if caller is not None and not _caller_may_send(caller, env):
            if problems.errors and not _names_another(caller, env):
                # the envelope cannot be read (a wrapper root, another namespace, no MaSoThue...):
                # its own errors say why, in a TU_CHOI, rather than a 403 that hides them
                return fail(Layer.ENVELOPE, problems)
            out.forbidden = True
            problems.add(_forbidden_problem(caller, env))
            return fail(Layer.ENVELOPE, problems)
        forms = self._parse_forms(env, problems, stream, aside)
        if problems.errors:
            return fail(Layer.ENVELOPE, problems)
        layers[str(Layer.ENVELOPE)] = "passed"

        # Signature: the envelope's, then every embedded XML form's, all bound to the unit's MST.
        report = verify_document(
            root, location=ENVELOPE_SIGNATURE_AT, trust=self.trust, at=at, document="Hoso",
            expected_mst=env.mst, legacy_sha1=self.legacy_sha1, splice=lean.splice() if lean else None,
        )
        out.add_signer(report)
        problems.extend(report.problems)
        del tree, root, lean  # the envelope's text (base64 of every file) is no longer needed
        for form in forms:
            report = verify_document(
                form.root, location=FORM_SIGNATURE_AT, trust=self.trust, at=at, document=form.file.name,
                form=form.file.code, expected_mst=env.mst, legacy_sha1=self.legacy_sha1, splice=form.splice,
            )
            out.add_signer(report)
            problems.extend(report.problems)
        if problems.errors:
            return fail(Layer.SIGNATURE, problems)
        layers[str(Layer.SIGNATURE)] = "passed"

        # Schema: each form, as signed (the signature is detached), against its XSD (a streamed
        # form was validated whole while it was read: it is valid, or it was not streamed).
        for form in forms:
            f = form.file
            if not form.validated:
                problems.extend(self.schemas.validate_form(f.code, form.root, size_hint=len(f.content),
                                                           cap=self.max_errors - len(problems)))
            out.forms.append({"code": f.code, "name": f.name, "size": len(f.content),
                              "schema": self.schemas.version(f.code) if self.schemas.knows(f.code) else None})
            if problems.full:
                break
        if problems.errors:
            return fail(Layer.SCHEMA, problems)
        layers[str(Layer.SCHEMA)] = "passed"
        out.problems, out.truncated = problems.items, problems.truncated  # warnings, if any
        out.accepted = True
        read.append(Read(env, [(form.file, None if form.splice else form.root) for form in forms]))
        return out

    def _parse_forms(self, env: Envelope, problems: Problems, stream: bool, aside: bool = True) -> list[_Form]:
        """Each embedded XML form: streamed (reduced tree, validated) when it can be, else its tree."""
        forms = []
        for f in env.files:
            if not f.is_xml:
                continue
            streaming = self.schemas.streaming(f.code) if stream and len(f.content) >= STREAM_MIN else None
            if streaming is not None:
                with streaming.lock:
                    streamed = stream_form(f.content, self.limits, streaming.schema, streaming.row_tags,
                                           longest_local_name=streaming.longest_local_name,
                                           aside_from=self.validate_aside_from if aside else 0)
                if streamed is not None:
                    forms.append(_Form(f, streamed.root, streamed.splice, validated=True))
                    continue
            try:
                forms.append(_Form(f, parse_xml(as_bytes(f.content), self.limits, form=f.code).getroot()))
            except Refusal as refusal:
                problems.extend(_in_file(p, f.name) for p in refusal.problems)
        return forms

    def receive_form(self, body: bytes, at: datetime, name: str = "") -> Outcome:
        """A standalone signed form (root D02-TS, TK1-TS, M01B-HSB...; SPEC §10 `check`): the
        layers that apply to it, signature then schema. Its signer's MST is reported, not bound
        (a form alone names no unit's MaSoThue). The server receives envelopes only."""
        out = Outcome(accepted=False, sha256=hashlib.sha256(body).digest(), size=len(body))
        out.layers = layers = {str(Layer.SIGNATURE): "not_run", str(Layer.SCHEMA): "not_run"}
        problems = Problems(cap=self.max_errors)
        try:
            root = parse_xml(body, self.limits, layer=Layer.SIGNATURE).getroot()
        except Refusal as refusal:
            problems.extend(refusal.problems)
            layers[str(Layer.SIGNATURE)] = "failed"
            out.problems, out.truncated = problems.items, problems.truncated
            return out
        code = root.tag.rsplit("}", 1)[-1]
        out.envelope = {"form": code, "name": name}
        report = verify_document(root, location=FORM_SIGNATURE_AT, trust=self.trust, at=at, document=name or code,
                                 form=code, legacy_sha1=self.legacy_sha1)  # fmt: skip
        out.add_signer(report)
        problems.extend(report.problems)
        failed = Layer.SIGNATURE if problems.errors else None
        if failed is None:
            layers[str(Layer.SIGNATURE)] = "passed"
            problems.extend(self.schemas.validate_form(code, root, size_hint=len(body), cap=self.max_errors))
            out.forms.append({"code": code, "name": name, "size": len(body),
                              "schema": self.schemas.version(code) if self.schemas.knows(code) else None})
            failed = Layer.SCHEMA if problems.errors else None
            layers[str(Layer.SCHEMA)] = "failed" if failed else "passed"
        else:
            layers[str(Layer.SIGNATURE)] = "failed"
        out.problems, out.truncated = problems.items, problems.truncated
        out.accepted = failed is None
        return out


@dataclass
class Read:
    """What the receipt read of an accepted dossier: its envelope, and each XML form with its tree
    as signed (its Signature detached), or None when it was streamed (a tree without its rows)."""

    envelope: Envelope
    forms: list[tuple[FormFile, etree._Element | None]]


@dataclass
class _Form:
    file: FormFile
    root: etree._Element
    splice: Splice | None = None  # the root is a reduced tree (trust/streaming.py)
    validated: bool = False  # by its XSD, while it was streamed


def _caller_may_send(caller: Caller, env: Envelope) -> bool:
    if caller.role == "submitter":
        return env.mst is not None and env.mst == caller.mst
    if caller.role == "ivan":
        return env.ivan_code is not None and env.ivan_code == caller.ivan
    return caller.role == "admin"


def _names_another(caller: Caller, env: Envelope) -> bool:
    """Does the envelope name a unit (or I-VAN) that is not the caller's? (Not: names none.)"""
    if caller.role == "ivan":
        return env.ivan_code is not None and env.ivan_code != caller.ivan
    return env.mst is not None and env.mst != caller.mst


def _forbidden_problem(caller: Caller, env: Envelope) -> Problem:
    if caller.role == "ivan":
        return Problem(
            layer=Layer.ENVELOPE, code=codes.AUTH_IVAN_MISMATCH,
            message_vi=f"Khóa API thuộc I-VAN {caller.ivan}, hồ sơ ghi MaIVAN {env.ivan_code or '(trống)'}.",
            message_en=f"The API key belongs to I-VAN {caller.ivan}; the dossier says MaIVAN {env.ivan_code or '(none)'}.",
            xpath="/Hoso/NoiDung/ThongTinIVAN/MaIVAN", value=env.ivan_code,
        )
    return Problem(
        layer=Layer.ENVELOPE, code=codes.AUTH_UNIT_MISMATCH,
        message_vi=f"Khóa API thuộc đơn vị có MST {caller.mst}, hồ sơ của MST {env.mst or '(trống)'}.",
        message_en=f"The API key belongs to the unit with tax code {caller.mst}; the dossier is for {env.mst or '(none)'}.",
        xpath="/Hoso/NoiDung/ThongTinDonVi/MaSoThue", value=env.mst,
    )


def _in_file(problem: Problem, name: str) -> Problem:
    return replace(problem, message_en=f"{name}: {problem.message_en}", message_vi=f"{name}: {problem.message_vi}")
