"""The legal parameters, now in `interchange.legal.params`: this module only re-exports them for
callers not yet moved (interchange.api.book)."""

from interchange.legal.params import (
    CAP_BASE,
    CAP_REGIONAL,
    DEFAULT_PATH,
    REGIONS,
    Contribution,
    Fund,
    LegalParameters,
    ParamsInForce,
    configured_parameters,
    default_parameters,
    normalise_rate,
)

__all__ = [
    "CAP_BASE",
    "CAP_REGIONAL",
    "DEFAULT_PATH",
    "REGIONS",
    "Contribution",
    "Fund",
    "LegalParameters",
    "ParamsInForce",
    "configured_parameters",
    "default_parameters",
    "normalise_rate",
]
