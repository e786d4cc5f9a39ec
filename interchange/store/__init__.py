"""The data-access layer: `Store` and the records it takes and gives."""

from .records import (
    KET_QUA,
    NOTICE_KINDS,
    RECEIVED,
    REFUSED,
    ROLES,
    TIEP_NHAN,
    TU_CHOI,
    ApiKey,
    Dossier,
    NewDossier,
    SaveResult,
    Scope,
)
from .store import Store

__all__ = [
    "KET_QUA",
    "NOTICE_KINDS",
    "RECEIVED",
    "REFUSED",
    "ROLES",
    "TIEP_NHAN",
    "TU_CHOI",
    "ApiKey",
    "Dossier",
    "NewDossier",
    "SaveResult",
    "Scope",
    "Store",
]
