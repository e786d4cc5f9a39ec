"""Development PKI: keys, CAs, unit (employer) and server certificates, CRLs (`certs`),
PEM/PKCS#12 files (`files`) and the first-run set-up of `interchange dev-setup` (`devsetup`).

Only for local use and tests. Production trust anchors are licensed Vietnamese CAs placed in
`certs/trusted`; nothing here is ever needed to *verify* a dossier. Callers use the names
below as `pki.<name>`.
"""

from interchange.devkit.pki.certs import (
    CLOCK_SKEW,
    KEY_KINDS,
    KEY_USAGE_PRESETS,
    UNIT_EKU,
    Issued,
    create_ca,
    issue_crl,
    issue_server_cert,
    issue_unit_cert,
    new_key,
)
from interchange.devkit.pki.devsetup import DevPki, ensure_dev_pki
from interchange.devkit.pki.files import (
    certs_pem,
    key_matches,
    key_pem,
    load_certs_pem,
    load_key_pem,
    load_p12,
    order_chain,
    write_certs_pem,
    write_key_pem,
    write_p12,
    write_pem_bundle,
)

__all__ = [
    "CLOCK_SKEW",
    "KEY_KINDS",
    "KEY_USAGE_PRESETS",
    "UNIT_EKU",
    "DevPki",
    "Issued",
    "certs_pem",
    "create_ca",
    "ensure_dev_pki",
    "issue_crl",
    "issue_server_cert",
    "issue_unit_cert",
    "key_matches",
    "key_pem",
    "load_certs_pem",
    "load_key_pem",
    "load_p12",
    "new_key",
    "order_chain",
    "write_certs_pem",
    "write_key_pem",
    "write_p12",
    "write_pem_bundle",
]
