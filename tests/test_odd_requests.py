"""No request to the endpoints added for results, books, callbacks and forwarding gets a 500:
odd identifiers, queries and bodies get a clear 4xx (or an empty answer)."""

from __future__ import annotations

import pytest

ODD_IDS = ["0", "x" * 300, "%00", "１２３４５６７８９０１２", "١٢٣٤٥٦٧٨٩٠١٢", "0011234567890", "' OR 1=1 --", "..%2f..%2fetc"]


@pytest.mark.parametrize("pid", ODD_IDS)
async def test_book_with_odd_identifiers(api, pid):
    resp = await api.get(f"/api/v1/persons/{pid}/book", headers=api.keys["auditor"])
    assert resp.status in (400, 404), await resp.text()
    assert (await resp.json())["code"]


@pytest.mark.parametrize("as_of", ["13/2026", "00/2026", "2026-13", "abc", "", "99999/1", "02/0000", "1/2026"])
async def test_book_with_odd_as_of(api, as_of):
    resp = await api.get(f"/api/v1/persons/001090123456/book?as_of={as_of}", headers=api.keys["auditor"])
    assert resp.status in (400, 404), await resp.text()


@pytest.mark.parametrize("path", ["deliveries", "forwarding", "notices/bhxh-tiep-nhan", "notices/xyz", "evidence"])
@pytest.mark.parametrize("id", ["nope", "x" * 500])
async def test_dossier_subresources_of_unknown_dossiers(api, path, id):
    resp = await api.get(f"/api/v1/dossiers/{id}/{path}", headers=api.keys["auditor"])
    assert resp.status in (400, 404), await resp.text()


@pytest.mark.parametrize(
    "body",
    [b"", b"null", b"[]", b'"http://x"', b'{"url": 5}', b'{"url": null}', b'{"url": "ftp://example.org/x"}',
     b'{"url": "http://user:pw@example.org/"}', b'{"url": "http://[::1]:99999/"}', b'{"url": "' + b"a" * 5000 + b'"}',
     b"\xff\xfe", b'{"url": "http://example.org/\\u0000"}'],
)
async def test_callback_with_odd_bodies(api, body):
    resp = await api.put("/api/v1/callback", data=body, headers={"Content-Type": "application/json", **api.keys["unit"]})
    assert 400 <= resp.status < 500, await resp.text()


async def test_callback_needs_a_key_and_a_role(api):
    assert (await api.put("/api/v1/callback", json={"url": "https://example.org/cb"})).status == 401
    resp = await api.put("/api/v1/callback", json={"url": "https://example.org/cb"}, headers=api.keys["auditor"])
    assert resp.status == 403
