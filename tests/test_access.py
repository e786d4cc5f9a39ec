"""Access control (SPEC §5): roles, unit isolation on every endpoint for every role, rotation,
revocation and per-key rate limits."""

from __future__ import annotations

import pytest

from interchange.api.ratelimit import RateLimiter
from tests.helpers import OTHER_UNIT, XML, dossier, notice_of, post, t

READ_PATHS = ("", "/original", "/notices/tiep-nhan", "/evidence")


@pytest.fixture
async def two_dossiers(api, world):
    """One dossier of the demo unit sent through I-VAN 00123, one of another unit sent directly."""
    _, n1, _ = await post(api, dossier(world.signer(world.unit), seed=101))
    _, n2, _ = await post(api, dossier(world.signer(world.other_unit), unit=OTHER_UNIT, seed=102, ivan=None), key="other")
    return t(notice_of(n1), "MaGiaoDich"), t(notice_of(n2), "MaGiaoDich")


# who sees which: unit's dossier, other unit's dossier
VISIBILITY = {
    "unit": (True, False),
    "other": (False, True),
    "ivan": (True, False),  # I-VAN 00123 carried the first one only
    "other_ivan": (False, False),
    "auditor": (True, True),
    "admin": (True, True),
}


@pytest.mark.parametrize("role", sorted(VISIBILITY))
@pytest.mark.parametrize("path", READ_PATHS, ids=["dossier", "original", "notice", "evidence"])
async def test_every_read_endpoint_isolates_units(api, two_dossiers, role, path):
    for dossier_id, visible in zip(two_dossiers, VISIBILITY[role], strict=True):
        resp = await api.get(f"/api/v1/dossiers/{dossier_id}{path}", headers=api.keys[role])
        assert resp.status == (200 if visible else 404), (role, path, dossier_id)


@pytest.mark.parametrize("role", sorted(VISIBILITY))
async def test_listing_isolates_units(api, two_dossiers, role):
    page = await (await api.get("/api/v1/dossiers", headers=api.keys[role])).json()
    expected = {d for d, visible in zip(two_dossiers, VISIBILITY[role], strict=True) if visible}
    assert {d["id"] for d in page["items"]} == expected


async def test_auditor_is_read_only(api, world):
    status, notice, _ = await post(api, dossier(world.signer(world.unit), seed=103), key="auditor")
    assert status == 403


async def test_rotation_and_revocation(api, world):
    keys = {k.key_id: k for k in await api.store.keys.list_all()}
    old_token = api.keys["unit"]["Authorization"].split()[1]
    old_id = old_token.split("_")[1]
    new_key, new_token = await api.store.keys.rotate(old_id)
    assert new_key.role == "submitter" and new_key.mst == keys[old_id].mst and new_key.key_id != old_id
    resp = await api.get("/api/v1/dossiers", headers={"Authorization": f"Bearer {old_token}"})
    assert resp.status == 401
    resp = await api.get("/api/v1/dossiers", headers={"Authorization": f"Bearer {new_token}"})
    assert resp.status == 200
    assert await api.store.keys.rotate(old_id) is None  # a revoked key cannot be rotated
    assert await api.store.keys.revoke(new_key.key_id)
    resp = await api.get("/api/v1/dossiers", headers={"Authorization": f"Bearer {new_token}"})
    assert resp.status == 401


def test_token_bucket():
    now = [0.0]
    limiter = RateLimiter(2.0, 3, clock=lambda: now[0])
    assert [limiter.take("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("k") == pytest.approx(0.5)
    assert limiter.take("other") == 0.0  # buckets are per key
    now[0] += 0.5
    assert limiter.take("k") == 0.0
    assert RateLimiter(0, 1).take("k") == 0.0  # 0 switches it off


@pytest.fixture
def cfg_limited(cfg):
    cfg.limits.rate_per_second = 1.0
    cfg.limits.rate_burst = 2
    return cfg


async def test_rate_limit_answers_429(cfg_limited, aiohttp_client, world):
    from interchange.api.http import SERVICES
    from interchange.server import make_app

    app = await make_app(cfg_limited, workers=0)
    client = await aiohttp_client(app)
    _, token = await app[SERVICES].store.keys.create("submitter", mst=OTHER_UNIT.mst)
    auth = {"Authorization": f"Bearer {token}"}
    statuses = [(await client.get("/api/v1/dossiers", headers=auth)).status for _ in range(3)]
    assert statuses == [200, 200, 429]
    resp = await client.post("/api/v1/dossiers", data=b"<Hoso/>", headers={**XML, **auth})
    assert resp.status == 429 and int(resp.headers["Retry-After"]) >= 1
    assert [e.text for e in notice_of(await resp.read()).iter("{urn:interchange:thongbao:1}Ma")] == ["RATE-LIMIT"]
