"""What the web console (interchange/api/console.py) adds to the API: the search by dossier
number and unit MST, the code catalogue, the caller's key, and its own files with a strict CSP.
The console itself is walked in a real browser by tests/test_console_browser.py."""

from __future__ import annotations

from interchange import codes
from interchange.rules.catalogue import every_code
from tests.helpers import OTHER_UNIT, UNIT, dossier, notice_of, post, t


async def _numbers(api, query: str, key: str = "auditor") -> list[str]:
    resp = await api.get(f"/api/v1/dossiers?{query}", headers=api.keys[key])
    assert resp.status == 200, await resp.text()
    return [d["so_ho_so"] for d in (await resp.json())["items"]]


async def test_search_by_dossier_number_and_unit_mst(api, world):
    numbers = {}
    for seed, (unit, issued) in enumerate([(UNIT, world.unit), (UNIT, world.unit), (OTHER_UNIT, world.other_unit)]):
        status, notice, _ = await post(api, dossier(world.signer(issued), unit=unit, seed=seed),
                                       key="unit" if unit is UNIT else "other")  # fmt: skip
        assert status == 202, notice
        numbers.setdefault(unit.mst, []).append(t(notice_of(notice), "SoHoSo"))
    first = numbers[UNIT.mst][0]
    assert await _numbers(api, f"so_ho_so={first}") == [first]  # slashes as typed, unencoded
    assert await _numbers(api, "so_ho_so=" + first.replace("/", "%2F")) == [first]
    assert await _numbers(api, "so_ho_so=99999/2026/TEST") == []
    assert sorted(await _numbers(api, f"mst={UNIT.mst}")) == sorted(numbers[UNIT.mst])
    assert await _numbers(api, f"mst={OTHER_UNIT.mst}") == numbers[OTHER_UNIT.mst]
    assert await _numbers(api, f"mst={UNIT.mst}&so_ho_so={numbers[OTHER_UNIT.mst][0]}") == []
    # a unit's key finds nothing of another unit, whatever it asks for
    assert await _numbers(api, f"so_ho_so={numbers[OTHER_UNIT.mst][0]}", key="unit") == []
    assert await _numbers(api, f"mst={OTHER_UNIT.mst}", key="unit") == []
    assert sorted(await _numbers(api, "mst=", key="unit")) == sorted(numbers[UNIT.mst])  # empty: no filter


async def test_code_catalogue_is_complete(api):
    assert (await api.get("/api/v1/codes")).status == 401
    resp = await api.get("/api/v1/codes", headers=api.keys["unit"])
    assert resp.status == 200
    listed = {c["code"]: c for c in (await resp.json())["codes"]}
    assert set(listed) == {c.code for c in every_code()}
    assert listed[codes.NOT_FOUND]["text_vi"].startswith("Không tìm thấy")
    assert listed["R-D02-CAP"]["severity"] == "warning" and listed["R-D02-CAP"]["text_en"]


async def test_the_callers_key(api):
    resp = await api.get("/api/v1/key", headers=api.keys["unit"])
    me = await resp.json()
    assert resp.status == 200 and me["role"] == "submitter" and me["mst"] == UNIT.mst and not me["sees_all"]
    assert "token" not in me and "secret" not in str(me).lower()
    me = await (await api.get("/api/v1/key", headers=api.keys["auditor"])).json()
    assert me["role"] == "auditor" and me["sees_all"]
    resp = await api.get("/api/v1/key")
    assert resp.status == 401 and (await resp.json())["code"] == codes.AUTH_MISSING
    resp = await api.get("/api/v1/key", headers={"Authorization": "Bearer ik_0_wrong"})
    assert resp.status == 401


async def test_console_files_are_served_with_a_strict_policy(api):
    resp = await api.get("/")
    page = await resp.text()
    assert resp.status == 200 and resp.content_type == "text/html"
    assert '<script src="/console/console.js"' in page and "<style" not in page and "onclick" not in page
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    for name, kind in (("console.js", "application/javascript"), ("console.css", "text/css")):
        resp = await api.get(f"/console/{name}")
        assert resp.status == 200 and resp.content_type == kind and len(await resp.read()) > 1000
    for name in ("nope.js", "..%2Fconsole.py", "index.html"):
        resp = await api.get(f"/console/{name}")
        assert resp.status == 404 and (await resp.json())["code"] == codes.NOT_FOUND
