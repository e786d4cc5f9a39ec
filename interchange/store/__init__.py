"""The data layer: `Store` (store.py lists its parts, one module per concern) and its types."""

from .store import Store
from .types import (
    ACCEPTED,
    ACTIVE,
    RECEIVED,
    REFUSED,
    REJECTED,
    ROLES,
    STOPPED,
    ApiKey,
    Dossier,
    NewDossier,
    SaveResult,
    Scope,
    Unit,
    WorkItem,
)

__all__ = [
    "ACCEPTED",
    "ACTIVE",
    "RECEIVED",
    "REFUSED",
    "REJECTED",
    "ROLES",
    "STOPPED",
    "ApiKey",
    "Dossier",
    "NewDossier",
    "SaveResult",
    "Scope",
    "Store",
    "Unit",
    "WorkItem",
]
