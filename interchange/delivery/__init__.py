"""Result delivery: every notice of a dossier POSTed to the callback URL its unit or I-VAN
registered, and each KET_QUA e-mailed to the registered unit.

A delivery is a row made in the transaction that stores its notice, with a work item of its
own (`deliver:<notice kind>:<route>`), so a delivery is never lost to a crash. Each run of the
work item is one attempt, recorded as a row; a failed attempt is tried again with a doubling
backoff up to a cap, and given up after a time or a number of attempts (`[delivery]`).

Delivery is at least once: a process killed after sending and before recording the attempt
sends again. Receivers deduplicate by the `X-Delivery-Id` header (the same id on every attempt
of one notice to one recipient; e-mails carry it in `Message-ID` and `X-Delivery-Id`).
"""
