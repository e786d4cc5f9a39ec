"""Shared fixtures: a test PKI (trusted CA, units, bad certificates), a config in a temp
folder, the HTTP API with a key per role. Helpers that are not fixtures (the units, signed
dossiers...) are in tests/helpers.py; the store's fixtures in tests/conftest_store.py."""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import web
from sqlalchemy.engine import make_url

from interchange.api.http import SERVICES
from interchange.config import Config
from interchange.devkit import pki
from interchange.notices import notice as notice_module
from interchange.server import make_app
from tests.helpers import OTHER_UNIT, UNIT, Pair, World, ivan_client, ivan_setup

pytest_plugins = ["tests.conftest_store"]


@pytest.fixture(scope="session", autouse=True)
def notice_keys_loaded_once():
    """The server loads its notice key from PEM whenever an app starts (make_app, and again for
    the inline worker), and loading an RSA key checks it (~40 ms). The same bytes make the same
    key: each distinct PEM is loaded once per session (a new or broken file is still loaded, or
    refused, by the real function)."""
    real = notice_module.load_pem_private_key
    loaded = {}

    def load_pem_private_key(data, password=None, **kw):
        key = (bytes(data), password, tuple(sorted(kw.items())))
        if key not in loaded:
            loaded[key] = real(data, password, **kw)
        return loaded[key]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(notice_module, "load_pem_private_key", load_pem_private_key)
        yield


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> World:
    base = tmp_path_factory.mktemp("pki")
    key = pki.new_key()
    root = pki.create_ca("Test Root CA", key=key)
    ca = pki.create_ca("Test Issuing CA", parent=root, key=pki.new_key())
    rogue = pki.create_ca("Rogue CA", key=pki.new_key())
    unit = pki.issue_unit_cert(ca, UNIT.mst, UNIT.name, key=pki.new_key())
    other = pki.issue_unit_cert(ca, OTHER_UNIT.mst, OTHER_UNIT.name, key=pki.new_key())
    server = pki.issue_server_cert(ca, key=pki.new_key())
    anchors = base / "trusted"
    pki.write_certs_pem(anchors / "test-root.pem", [root.cert])
    return World(root, ca, rogue, unit, other, server, anchors)


@pytest.fixture
def cfg(world: World, tmp_path: Path, migrated_sqlite) -> Config:
    """A config in a temp folder: SQLite store (a copy of the migrated template, see
    tests/conftest_store.py), the test root as the only anchor, inline worker."""
    cfg = Config()
    cfg.base_dir = tmp_path
    cfg.data_dir = str(tmp_path / "data")
    anchors = tmp_path / "trusted"
    shutil.copytree(world.anchors_dir, anchors)
    cfg.trust.anchors_dir = str(anchors)
    cfg.trust.crl_dir = str(tmp_path / "crl")
    cfg.server.workers = 0
    cfg.server.office_code = "TEST"
    cfg.targets = {"600": "5 working days", "04/DK-IVAN": "2 working hours"}
    pki.write_key_pem(cfg.signing_key_path, world.server.key)
    pki.write_certs_pem(cfg.signing_cert_path, [world.server.cert, *world.server.chain])
    migrated_sqlite(Path(make_url(cfg.store_url).database))
    return cfg


@pytest.fixture
async def api(cfg, store_url, aiohttp_client):
    cfg.store.url = store_url
    app = await make_app(cfg, workers=0)
    client = await aiohttp_client(app)
    client.services = app[SERVICES]
    store = client.services.store
    keys = {}
    for name, role, kw in (
        ("unit", "submitter", {"mst": UNIT.mst}),
        ("other", "submitter", {"mst": OTHER_UNIT.mst}),
        ("ivan", "ivan", {"ivan": "00123"}),
        ("other_ivan", "ivan", {"ivan": "00999"}),
        ("auditor", "auditor", {}),
        ("admin", "admin", {}),
    ):
        _, token = await store.keys.create(role, **kw)
        keys[name] = {"Authorization": f"Bearer {token}"}
    client.keys = keys
    client.store = store
    return client


@pytest.fixture
def clean_environ(monkeypatch):
    """No INTERCHANGE_* variable of the machine running the tests leaks into config loading."""
    for name in list(os.environ):
        if name.startswith("INTERCHANGE_"):
            monkeypatch.delenv(name)


@pytest.fixture
def now() -> datetime:
    return datetime.now(UTC)


def hours(n: float) -> timedelta:
    return timedelta(hours=n)


@pytest.fixture
async def scripted(world, cfg, store_url, aiohttp_client, aiohttp_server):
    """The I-VAN in front of an upstream that answers from a script: (status, body, headers) each."""
    script: list[tuple[int, bytes, dict]] = []
    seen: list[bytes] = []

    async def answer(request: web.Request) -> web.Response:
        seen.append(await request.read())
        status, body, headers = script.pop(0)
        return web.Response(status=status, body=body, headers=headers, content_type="application/xml")

    app = web.Application()
    app.router.add_post("/api/v1/dossiers", answer)
    server = await aiohttp_server(app)
    cfg.store.url = store_url
    ivan_setup(cfg, str(server.make_url("/")), "ik_000000000000_x")
    client, keys = await ivan_client(cfg, aiohttp_client)
    pair = Pair(client, None, None, [0], keys)  # type: ignore[arg-type]
    pair.script, pair.seen = script, seen  # type: ignore[attr-defined]
    return pair
