"""Where a small dossier's CPU goes in the workers' code, stage by stage, each run back to back
in this process on one core, beside the floor measured in the same run (dossier_floor.py):

    floor            the receipt's unavoidable work done the shortest way (dossier_floor.py)
    receipt layers   Receiver.receive_and_read: envelope, signatures (with the certificate
                     path and revocation), schemas, as a worker process runs them
    rule layer       judge_read on the trees the receipt read (the judgement made at receipt)
    two notices      the TIEP_NHAN and the KET_QUA signed (NoticeSigner.sign), as the workers
                     sign them for the receipt batch and the result group
    the hop          the worker's answer (the Outcome with its judgement) pickled and unpickled,
                     as it crosses from a worker process to the server

None of this is the server process's own work (HTTP, the store, the result groups' records):
bench/receipts.py measures that as the server's CPU per dossier. Back to back, the caches stay
warm; in the server the same calls cost more (bench/README.md). The last lines say what share of
the limit this much CPU per dossier would allow even with nothing else to do, against issue
#13's 50 %: with every core busy, receipts/s = cores / CPU per dossier, and the limit is
cores / floor, so the share is floor / CPU per dossier.

    .venv/bin/python bench/dossier_budget.py [--rows 20] [--count 300]

Prints figures; asserts nothing.
"""

from __future__ import annotations

import pickle
import sys
import tempfile
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))

import benchlib  # noqa: E402
import dossier_floor  # noqa: E402

from interchange.config import load_config  # noqa: E402
from interchange.intake.pipeline import Caller, Receiver  # noqa: E402
from interchange.kinds import NOTICE_RECEIPT, NOTICE_RESULT  # noqa: E402
from interchange.legal.params import configured_parameters  # noqa: E402
from interchange.notices.notice import NoticeData, NoticeSigner  # noqa: E402
from interchange.rules.judge import judge_read  # noqa: E402


def best_ms(bodies: list[bytes], fn: Callable[[bytes], object]) -> float:
    return dossier_floor.best_seconds(bodies, fn) * 1000


def main() -> int:
    args, pki, bodies = dossier_floor.small_dossiers(__doc__.split("\n\n")[0])
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(benchlib.write_config(Path(tmp), pki, benchlib.sqlite_url(Path(tmp))))
        receiver = Receiver.from_config(cfg.trust, cfg.trust_paths, cfg.limits)
        signer = NoticeSigner.from_files(cfg.signing_key_path, cfg.signing_cert_path)
        params = configured_parameters(cfg.parameters_path)
    caller = Caller(role="submitter", mst=benchlib.UNIT.mst)
    at = datetime.now(UTC)

    def received(body: bytes):
        outcome, read = receiver.receive_and_read(body, at, caller)
        if not outcome.accepted or read is None:
            raise SystemExit(f"a dossier was refused: {outcome.layers} {outcome.problems[:2]}")
        return outcome, read

    def judged(body: bytes):
        outcome, read = received(body)
        outcome.judgement = judge_read(read.envelope, read.forms, params=params, limits=cfg.limits)
        return outcome

    def notices(body: bytes) -> None:
        for kind in (NOTICE_RECEIPT, NOTICE_RESULT):
            signer.sign(NoticeData(kind=kind, transaction_id=uuid.uuid4().hex, received_at=at, issued_at=at,
                                   so_ho_so="00001/2026/BENCH", procedure="600", mst=benchlib.UNIT.mst))  # fmt: skip

    answers = {body: judged(body) for body in bodies}

    floor = dossier_floor.measure(bodies, pki.signing_key).per_dossier_s * 1000
    receipt = best_ms(bodies, received)
    rules = best_ms(bodies, judged) - receipt
    signing = best_ms(bodies, notices)
    hop = best_ms(bodies, lambda body: pickle.loads(pickle.dumps(answers[body], protocol=pickle.HIGHEST_PROTOCOL)))
    total = receipt + rules + signing + hop

    print(f"dossiers     {len(bodies)} fresh, D02-TS {args.rows} rows, {sum(map(len, bodies)) / len(bodies) / 1024:.1f} KiB each; "
          f"answer pickled {len(pickle.dumps(answers[bodies[0]], protocol=pickle.HIGHEST_PROTOCOL)) / 1024:.1f} KiB")  # fmt: skip
    print(f"{'stage':<16} {'ms':>6} {'x floor':>8}")
    for name, ms in (("floor", floor), ("receipt layers", receipt), ("rule layer", rules), ("two notices", signing),
                     ("the hop", hop), ("sum", total)):  # fmt: skip
        print(f"{name:<16} {ms:6.2f} {ms / floor:8.2f}")
    print(f"share of the limit at this much CPU per dossier, with nothing else (no HTTP, no store, warm caches): "
          f"{floor / total * 100:.0f} %")
    print(f"issue #13's 50 % of the limit: all the CPU of a dossier within 2 x floor = {2 * floor:.2f} ms, the "
          f"server's (HTTP, store, records; bench/receipts.py) included; these stages alone take {total:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
