"""E-mail of a KET_QUA to the unit's registered address, through a pluggable sender:
`outbox` (default: one RFC 5322 .eml file per message in <data_dir>/outbox, for a mail
system or a person to pick up) or `smtp` (stdlib smtplib in a thread)."""

from __future__ import annotations

import asyncio
import os
import smtplib
import ssl
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from pathlib import Path
from typing import Protocol

from interchange.config import DeliveryConfig
from interchange.store.types import ACCEPTED, Dossier

OUTBOX_DIRNAME = "outbox"  # .eml files, under the data directory


class MailSender(Protocol):
    async def send(self, message: EmailMessage, name: str) -> None:
        """Send one message; `name` is unique per message (the delivery id). Raises on failure."""


def build_message(
    *, delivery_id: str, mail_from: str, to: str, dossier: Dossier, notice: bytes, now: datetime
) -> EmailMessage:
    """The notification of a dossier's result, with the signed KET_QUA attached as stored."""
    accepted = dossier.state == ACCEPTED
    number = dossier.so_ho_so or dossier.id
    msg = EmailMessage(policy=SMTP)
    msg["From"] = mail_from
    msg["To"] = to
    msg["Date"] = format_datetime(now)
    domain = mail_from.rsplit("@", 1)[-1] or "localhost"
    # The same on every attempt: a mail system (or a person) sees a resend as a duplicate.
    msg["Message-ID"] = f"<{delivery_id}@{domain}>"
    msg["X-Delivery-Id"] = delivery_id
    msg["X-Transaction-Id"] = dossier.id
    msg["Subject"] = (
        f"Kết quả hồ sơ {number}: {'CHẤP NHẬN' if accepted else 'KHÔNG CHẤP NHẬN'} "
        f"/ Result of dossier {number}: {'accepted' if accepted else 'rejected'}"
    )
    errors = [p for p in dossier.problems if p.get("severity", "error") == "error"]
    lines_vi = [
        f"Hồ sơ số {number} (thủ tục {dossier.procedure or '-'}, kỳ {dossier.period or '-'}, "
        f"MST {dossier.unit_mst or '-'}) đã có kết quả: {'CHẤP NHẬN' if accepted else 'KHÔNG CHẤP NHẬN'}.",
        f"Mã giao dịch: {dossier.id}",
        "Thông báo kết quả có chữ ký số của cơ quan được đính kèm (ket-qua.xml).",
    ]
    lines_en = [
        f"Dossier {number} (procedure {dossier.procedure or '-'}, period {dossier.period or '-'}, "
        f"tax code {dossier.unit_mst or '-'}) has its result: {'accepted' if accepted else 'rejected'}.",
        f"Transaction id: {dossier.id}",
        "The signed result notice is attached (ket-qua.xml); it is also at "
        f"/api/v1/dossiers/{dossier.id}/notices/ket-qua.",
    ]
    if errors:
        lines_en.append(f"Errors: {len(errors)} (codes {', '.join(sorted({str(p.get('code')) for p in errors}))}).")
    msg.set_content("\n".join([*lines_vi, "", *lines_en, ""]))
    msg.add_attachment(notice, maintype="application", subtype="xml", filename=f"ket-qua-{dossier.id}.xml")
    return msg


class OutboxSender:
    """Writes each message as <folder>/<name>.eml (written aside, then renamed: never half a file;
    a resend of the same delivery replaces its file)."""

    def __init__(self, folder: Path):
        self.folder = folder

    async def send(self, message: EmailMessage, name: str) -> None:
        await asyncio.to_thread(self._write, message.as_bytes(policy=SMTP), name)

    def _write(self, data: bytes, name: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        final = self.folder / f"{name}.eml"
        partial = self.folder / f".{name}.eml.part"
        with partial.open("wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(partial, final)


class SmtpSender:
    """Sends through an SMTP server (STARTTLS and login when configured), in a thread."""

    def __init__(
        self, host: str, port: int, *, starttls: bool, user: str, password: str, timeout: float
    ):
        self.host, self.port = host, port
        self.starttls, self.user, self.password = starttls, user, password
        self.timeout = timeout

    async def send(self, message: EmailMessage, name: str) -> None:
        await asyncio.to_thread(self._send, message)

    def _send(self, message: EmailMessage) -> None:
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
            if self.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if self.user:
                smtp.login(self.user, self.password)
            smtp.send_message(message)


def make_sender(d: DeliveryConfig, data_dir: Path) -> MailSender | None:
    """The sender `[delivery] email_sender` names; None when e-mail is off. The outbox is a folder
    of the (resolved) data directory."""
    if d.email_sender == "off":
        return None
    if d.email_sender == "outbox":
        return OutboxSender(Path(data_dir) / OUTBOX_DIRNAME)
    if d.email_sender == "smtp":
        return SmtpSender(
            d.smtp_host, d.smtp_port, starttls=d.smtp_starttls, user=d.smtp_user, password=d.smtp_password,
            timeout=d.timeout_seconds,
        )  # fmt: skip
    raise ValueError(f"config: delivery.email_sender must be outbox, smtp or off, not {d.email_sender!r}")
