"""The web console in a real headless Chromium (Debian's `chromium`, driven by Playwright): a real
server (tests/serverproc.py) with dossiers received, refused, judged and rejected by the rules,
a registration and a person's records; the pages are walked as a person would, and each is
saved as a screenshot in artifacts/console/ (the path is printed) for a reviewer to look at.

Skipped, with the reason, when Playwright or Chromium is missing (.ci/run installs both).
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import time
import zipfile
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode

import pytest

from interchange.clock import vn_now
from interchange.config import REPO_ROOT
from interchange.devkit import samples
from interchange.store import Store
from interchange.trust.dossier_signing import sign_envelope
from tests.helpers import on_private_loop, p_row, registration
from tests.serverproc import DEMO_MST, ServerProc, free_port, make_site

CHROMIUM = os.environ.get("INTERCHANGE_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


def _missing(why: str) -> None:
    """Skip here; in CI (.ci/run installs both) a missing browser is a failure, not a silent skip."""
    if os.environ.get("CI"):
        pytest.fail(f"console browser tests cannot run in CI: {why}", pytrace=False)
    pytest.skip(f"console browser tests skipped: {why}", allow_module_level=True)


try:
    from playwright import sync_api
except ImportError:
    _missing("playwright is not installed (pip install -e '.[test]')")
if not Path(CHROMIUM).exists():
    _missing(f"no Chromium at {CHROMIUM} (apt-get install chromium, as .ci/run does)")
expect = sync_api.expect

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")
SHOTS = REPO_ROOT / "artifacts" / "console"
PERSON_PID, PERSON_SI = "001090123456", "0112345678"
HOSTILE_NAME = 'Công ty <img src=x onerror="document.title=1"> & "Co"'  # shown as text, never as markup
JSONISH = re.compile(r'\{\s*"|"code"\s*:')  # raw JSON on the page
ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d|\.\d{6}")  # an ISO time or microseconds shown as is


def d02(rows: list[dict[str, str]], period: str, signer) -> bytes:
    form = samples.d02ts_of(rows)
    envelope = samples.envelope(samples.Unit(), [("D02-TS", "D02-TS.xml", form)], procedure="600", period=period, ivan=None)
    return sign_envelope(envelope, signer)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A server with: a registration (accepted), a person's D02-TS (accepted), a D02-TS the rules
    reject (an error and a warning), an unsigned dossier (refused at receipt), and more received
    dossiers for paging; every result settled before the browser looks."""
    root = tmp_path_factory.mktemp("console")
    site = make_site(root, f"sqlite+aiosqlite:///{root / 'interchange.db'}")
    server = ServerProc(site, root / "server.log", JOBS_INTERVAL_SECONDS="0.2", DELIVERY_ALLOW_PRIVATE_URLS="true")
    try:
        server.wait_ready()
        signer = site.signer()
        hook = {"url": f"http://127.0.0.1:{free_port()}/hook"}  # nobody listens: attempts fail, with their error
        answer = server.request("PUT", "/api/v1/callback", body=json.dumps(hook).encode(), token=site.submitter,
                                headers={"Content-Type": "application/json"})  # fmt: skip
        assert answer.status == 201, answer
        sent = {
            "registration": registration(signer),
            "person": d02([p_row(MasoBHXH=PERSON_SI, CMND=PERSON_PID, TienLuong="10000000", TuThang="03/2026", PA="TM",
                                 Loai="1", MucHuong="4")], "03/2026", signer),  # fmt: skip
            "rejected": d02([p_row(MasoBHXH="0112345679", TienLuong="1000000", TuThang="04/2026", PA="TM"),
                             p_row(MasoBHXH="0112345680", STT="2", TienLuong="900000000", TuThang="04/2026", PA="TM",
                                   HoTen="Lê Thị Cúc", GioiTinh="0")], "04/2026", signer),  # fmt: skip
            "refused": samples.dossier_600(samples.Unit(name=HOSTILE_NAME), rows=2, seed=5),  # not signed
            **{f"more{i}": sign_envelope(samples.dossier_600(rows=1, seed=10 + i, period=f"{i + 1:02d}/2025"), signer)
               for i in range(5)},
        }  # fmt: skip
        ids = {}
        for name, body in sent.items():
            answer = server.request("POST", "/api/v1/dossiers", body=body, token=site.submitter)
            assert answer.status in (202, 422), (name, answer)
            ids[name] = answer.headers.get("x-transaction-id")
        _settle(server, site)
        facility = on_private_loop(_facility_key(site.store_url))
        for name in ("Nguyễn Văn Phúc", "Nguyễn Văn Sai"):  # a card, and a name that does not agree
            query = urlencode({"name": name, "birth": "15/03/1990"})
            assert server.get(f"/api/v1/hi-cards/{PERSON_PID}?{query}", facility).status in (200, 404)
        _wait_for(server, site, f"/api/v1/persons/{PERSON_PID}/lookups", lambda o: len(o["lookups"]) == 2)
        _wait_for(server, site, f"/api/v1/dossiers/{ids['person']}/deliveries",
                  lambda o: any(d["attempts"] for d in o["deliveries"]))  # fmt: skip
        server.site, server.ids, server.sent, server.base = site, ids, sent, f"http://127.0.0.1:{site.port}/"
        yield server
    finally:
        server.stop()


async def _facility_key(store_url: str) -> str:
    store = await Store.open(store_url)
    try:
        return (await store.keys.create("facility", facility="01001", label="console test"))[1]
    finally:
        await store.close()


def _wait_for(server: ServerProc, site, path: str, done, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = json.loads(server.get(path, site.auditor).body)
        if done(got):
            return
        time.sleep(0.2)
    raise AssertionError(f"{path} after {timeout} s: {got}")


def _settle(server: ServerProc, site, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        page = json.loads(server.get("/api/v1/dossiers?state=received&limit=500", site.auditor).body)
        if not page["items"]:
            return
        time.sleep(0.2)
    raise AssertionError(f"dossiers still without a result after {timeout} s: {page}")


@pytest.fixture(scope="module")
def browser(served):  # after the server: dev-setup runs its own event loop, Playwright keeps one running
    SHOTS.mkdir(parents=True, exist_ok=True)
    print(f"\nconsole screenshots: {SHOTS}")
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser, served):
    context = browser.new_context(viewport={"width": 1360, "height": 900}, accept_downloads=True, locale="vi-VN")
    page = context.new_page()
    page.set_default_timeout(10000)
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error"
            and not msg.text.startswith("Failed to load resource") else None)  # error answers are expected here
    yield page
    context.close()
    assert errors == [], f"script errors in the console: {errors}"


def sign_in(page, served, token: str | None = None, hash: str = "") -> None:
    page.goto(served.base + hash)
    page.fill("#key", token or served.site.auditor)
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#who:has-text('auditor'), #who:has-text('submitter')")


def visit(page, served, hash: str) -> None:
    """Go to a console address and wait until the page has drawn it (body[data-ready])."""
    page.goto(served.base + hash)
    page.wait_for_selector(f'body[data-ready="{hash}"]', state="attached")


def shot(page, name: str) -> None:
    page.screenshot(path=str(SHOTS / name), full_page=True)


def no_raw_json_or_utc(text: str) -> None:
    assert not JSONISH.search(text), text
    assert not ISO_UTC.search(text), text


def test_list_filters_and_paging(page, served):
    sign_in(page, served)
    rows = page.locator("table.list tbody tr")
    rows.first.wait_for()
    assert rows.count() == 9  # every dossier, 20 a page
    text = page.inner_text("#view")
    assert "Từ chối tiếp nhận" in text and "Chấp nhận" in text and "Không chấp nhận" in text and "+07:00" in text
    no_raw_json_or_utc(text)
    assert HOSTILE_NAME in text and page.locator("#view img").count() == 0
    shot(page, "list.png")

    today = vn_now().date()
    for query, count in ((f"from={today}&to={today}", 9), (f"from={today + timedelta(days=1)}", 0),
                         (f"to={today - timedelta(days=1)}", 0)):  # fmt: skip
        visit(page, served, "#/dossiers?" + query)  # whole days in Vietnam, both ends included
        expect(page.locator("table.list tbody tr")).to_have_count(count)
    page.click("#clear")
    expect(page.locator("table.list tbody tr")).to_have_count(9)  # the view drawn again: its form is the new one
    page.fill("input[name=from]", today.strftime("%d/%m/%Y"))  # as people write a day here
    page.click("#search button[type=submit]")
    expect(page).to_have_url(re.compile(f"from={today}"))
    expect(page.locator("table.list tbody tr")).to_have_count(9)
    page.fill("input[name=to]", "31/02/2026")
    page.click("#search button[type=submit]")
    page.wait_for_selector("#results .error")
    assert "31/02/2026" in page.inner_text("#results .error") and "dd/mm/yyyy" in page.inner_text("#results .error")

    page.click("#clear")
    expect(page.locator("table.list tbody tr")).to_have_count(9)
    page.select_option("select[name=state]", "refused")
    page.click("#search button[type=submit]")
    expect(page.locator("table.list tbody tr")).to_have_count(1)  # no eval: the CSP forbids it
    assert served.ids["refused"] in page.inner_html("table.list") and "state=refused" in page.url

    visit(page, served, "#/dossiers?period=04%2F2026")
    expect(page.locator("table.list tbody tr")).to_have_count(1)  # no eval: the CSP forbids it
    assert "04/2026" in page.inner_text("table.list")

    visit(page, served, "#/dossiers?mst=0309876547")  # a unit with no dossier here
    page.wait_for_selector("p.empty")
    assert "Không có hồ sơ nào khớp" in page.inner_text("#results")

    visit(page, served, "#/dossiers?limit=5&procedure=600")
    expect(page.locator("table.list tbody tr")).to_have_count(5)  # no eval: the CSP forbids it
    first_page = page.inner_text("table.list")
    assert page.is_disabled("#prev") and page.is_enabled("#next")
    page.click("#next")
    page.wait_for_selector(".pager span:has-text('Trang 2')")
    assert page.locator("table.list tbody tr").count() == 3 and page.is_disabled("#next")  # 8 of procedure 600
    assert page.inner_text("table.list") != first_page
    shot(page, "list-page2.png")
    page.reload()  # the page number and the way back survive a reload
    page.wait_for_selector(".pager span:has-text('Trang 2')")
    assert page.is_enabled("#prev")
    page.click("#prev")
    page.wait_for_selector(".pager span:has-text('Trang 1')")
    assert page.inner_text("table.list") == first_page


def test_lookup_by_dossier_number_opens_the_dossier(page, served):
    sign_in(page, served)
    number = _number(served, "person")
    page.fill("input[name=so_ho_so]", number)
    page.click("#search button[type=submit]")
    expect(page).to_have_url(re.compile(r"#/dossier/"))
    page.wait_for_selector(f"h1:has-text('{number}')")
    assert served.ids["person"] in page.url

    page.goto(served.base + "#/")
    page.goto(served.base + f"#/dossier/{number}")  # a number in the address, as typed
    expect(page).to_have_url(re.compile(served.ids["person"]))
    page.wait_for_selector(f"h1:has-text('{number}')")
    page.goto(served.base + "#/dossier/99999/2026/TEST")
    page.wait_for_selector("#view .error")
    assert "Không có hồ sơ số 99999/2026/TEST" in page.inner_text("#view .error")


def _number(served, name: str) -> str:
    return json.loads(served.get(f"/api/v1/dossiers/{served.ids[name]}", served.site.auditor).body)["so_ho_so"]


def test_dossier_page_layers_signers_notices_evidence(page, served):
    sign_in(page, served, hash=f"#/dossier/{served.ids['person']}")
    page.wait_for_selector("#signers table")
    layers = page.inner_text("#layers")
    assert layers.count("đạt") == 4 and "không đạt" not in layers
    signers = page.inner_text("#signers")
    assert DEMO_MST in signers and "Interchange Development CA" in signers and "hợp lệ" in signers
    assert "không xác định" in signers or "chưa bị thu hồi" in signers  # the revocation status, in words
    assert "Không có lỗi hay cảnh báo." in page.inner_text("#receipt-errors")
    assert "Thông báo kết quả" in page.inner_text("#files") and "Thông báo tiếp nhận" in page.inner_text("#files")
    page.wait_for_selector("#deliveries ol.attempts li")
    deliveries = page.inner_text("#deliveries")
    assert "callback" in deliveries and "/hook" in deliveries and "+07:00" in deliveries
    no_raw_json_or_utc(page.inner_text("#view"))
    shot(page, "dossier.png")

    with page.expect_download() as got:
        page.click("#evidence")
    download = got.value
    assert download.suggested_filename == f"evidence-{served.ids['person']}.zip"
    with zipfile.ZipFile(io.BytesIO(Path(download.path()).read_bytes())) as bundle:
        assert any("original" in name for name in bundle.namelist())
    with page.expect_download() as got:
        page.click("button[data-kind=original]")
    assert Path(got.value.path()).read_bytes() == served.sent["person"]


def test_receipt_and_result_errors_in_vietnamese_then_english(page, served):
    sign_in(page, served, hash=f"#/dossier/{served.ids['refused']}")
    page.wait_for_selector("#receipt-errors table")
    receipt = page.inner_text("#receipt-errors")
    assert "SIG-MISSING" in receipt and "Tài liệu chưa được ký số." in receipt and "The document is not signed." in receipt
    assert "Chưa có kết quả." in page.inner_text("#result-errors")
    assert "Thông báo từ chối" in page.inner_text("#files")
    shot(page, "dossier-refused.png")

    page.goto(served.base + f"#/dossier/{served.ids['rejected']}")
    page.wait_for_selector("#result-errors table")
    result = page.inner_text("#result-errors")
    assert "R-D02-SALARY-MIN" in result and "R-D02-CAP" in result
    assert "Lỗi" in result and "Cảnh báo" in result
    assert "không đạt" in page.inner_text("#layers")
    shot(page, "dossier-rejected.png")

    page.click("#lang-en")
    page.wait_for_selector("h2:has-text('Errors and warnings of the result')")
    assert "Warning" in page.inner_text("#result-errors") and "Rules" in page.inner_text("#layers")
    shot(page, "dossier-rejected-en.png")
    page.click("#lang-vi")
    page.wait_for_selector("h2:has-text('Lỗi và cảnh báo của kết quả')")


def test_person_book(page, served):
    sign_in(page, served, hash=f"#/book/{PERSON_PID}")
    page.wait_for_selector("#periods table")
    text = page.inner_text("#book")
    assert "Nguyễn Văn Phúc" in text and PERSON_SI in text and "03/2026" in text and "₫" in text
    shot(page, "book.png")
    page.fill("input[name=pid]", "123")
    page.click("#book-form button[type=submit]")
    page.wait_for_selector("#book .error")
    assert "BAD-PID" in page.inner_text("#book .error")


def test_unit_registration(page, served):
    sign_in(page, served, hash="#/unit")
    page.fill("input[name=mst]", DEMO_MST)
    page.click("#unit-form button[type=submit]")
    page.wait_for_selector("#unit table")
    text = page.inner_text("#unit")
    assert "đang giao dịch" in text and "ketoan@mauviet.vn" in text and served.ids["registration"] in text
    shot(page, "unit.png")
    page.click(f"#unit a:has-text('{served.ids['registration']}')")
    page.wait_for_selector("h1 .badge")
    assert "04/DK-IVAN" in page.inner_text("#view")


def test_verify_upload(page, served, tmp_path):
    good, bad = tmp_path / "ho-so-da-ky.xml", tmp_path / "ho-so-sua.xml"
    good.write_bytes(served.sent["person"])
    bad.write_bytes(served.sent["person"].replace("Mẫu Việt".encode(), "Mẫu Viet".encode(), 1))  # changed after signing
    sign_in(page, served, hash="#/verify")
    page.set_input_files("#verify-file", str(bad))
    page.click("#verify-form button[type=submit]")
    page.wait_for_selector("#verdict")
    assert "Có chữ ký không hợp lệ" in page.inner_text("#verdict")
    assert "không hợp lệ" in page.inner_text("#report table.signers")  # which one, and why
    shot(page, "verify-bad.png")
    page.set_input_files("#verify-file", str(good))
    page.click("#verify-form button[type=submit]")
    page.wait_for_selector("#verdict:has-text('Mọi chữ ký hợp lệ')")
    report = page.inner_text("#report")
    assert DEMO_MST in report and "D02-TS" in report
    no_raw_json_or_utc(report)
    shot(page, "verify.png")

    junk = tmp_path / "bang-luong.xlsx"
    junk.write_bytes(b"PK\x03\x04 not XML")  # the wrong file picked
    page.set_input_files("#verify-file", str(junk))
    page.click("#verify-form button[type=submit]")
    page.wait_for_selector("#verdict:has-text('Không kiểm tra được chữ ký nào')")
    report = page.inner_text("#report")
    assert "XML-MALFORMED" in report and "bang-luong.xlsx" in report
    no_raw_json_or_utc(report)


def test_errors_are_readable_messages(page, served):
    page.goto(served.base)
    page.fill("#key", "ik_0_not-a-key")
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#login-error .error")
    assert "Khóa API sai hoặc đã bị thu hồi" in page.inner_text("#login-error")
    shot(page, "login-error.png")

    sign_in(page, served, hash="#/dossier/khong-co-ho-so-nay")
    page.wait_for_selector("#view .error")
    text = page.inner_text("#view")
    assert "NOT-FOUND" in text and "HTTP 404" in text and "Không" in text  # Vietnamese first, whatever the wording
    no_raw_json_or_utc(text)
    shot(page, "error.png")

    page.goto(served.base + "#/dossiers?cursor=not-a-cursor")  # the API's 400, in words
    page.wait_for_selector("#results .error")
    assert "BAD-QUERY" in page.inner_text("#results")
    no_raw_json_or_utc(page.inner_text("#results"))


def test_card_lookup_log_for_auditors_only(page, served):
    sign_in(page, served, hash=f"#/lookups/{PERSON_PID}")
    page.wait_for_selector("#lookups table")
    log = page.inner_text("#lookups")
    assert "01001" in log and PERSON_PID in log and "+07:00" in log
    assert "thẻ còn giá trị" in log and "họ tên hoặc ngày sinh không khớp" in log  # the outcomes, in words
    shot(page, "lookups.png")
    page.click("#logout")
    sign_in(page, served, token=served.site.submitter, hash=f"#/lookups/{PERSON_PID}")
    page.wait_for_selector("#lookups .error")
    assert "AUTH-ROLE" in page.inner_text("#lookups") and "HTTP 403" in page.inner_text("#lookups")
    page.goto(served.base + "#/")
    page.wait_for_selector("table.list tbody tr")
    assert page.locator("table.list tbody tr").count() == 9  # the demo unit's own: all of them here


PROBLEM_SHAPES = [
    # RFC 9457 with Vietnamese title/detail beside title_en/detail_en (the API's problem+json)
    ({"type": "urn:interchange:problem:BAD-QUERY", "title": "Tham số truy vấn không hợp lệ.",
      "title_en": "A query parameter is not valid.", "status": 400, "detail": "Trạng thái không có giá trị 'bogus'.",
      "detail_en": "state is not one of its values", "code": "BAD-QUERY", "instance": "/api/v1/units/x",
      "parameter": "state", "allowed": ["received", "accepted"], "message": "state is not one of its values"},
     ["Trạng thái không có giá trị 'bogus'.", "state is not one of its values", "state ∈ {received, accepted}"]),
    # plain RFC 9457, English only: the Vietnamese comes from the code catalogue
    ({"type": "about:blank", "title": "Not Found", "status": 404, "detail": "no such registered unit", "code": "NOT-FOUND"},
     ["Không tìm thấy (hoặc người gọi không được xem).", "no such registered unit"]),
    # the first format: {status, code, message}
    ({"status": 404, "code": "NOT-FOUND", "message": "no such registered unit"},
     ["Không tìm thấy (hoặc người gọi không được xem).", "no such registered unit"]),
    # not JSON at all (a proxy's page): the status in words
    ("<html><body>Bad Gateway</body></html>", ["Máy chủ đang bận", "HTTP 503"]),
]  # fmt: skip


@pytest.mark.parametrize("body, shown", PROBLEM_SHAPES)
def test_every_error_shape_is_shown_in_words(page, served, body, shown):
    status = body["status"] if isinstance(body, dict) else 503
    page.route("**/api/v1/units/*", lambda route: route.fulfill(
        status=status, content_type="application/problem+json" if isinstance(body, dict) else "text/html",
        body=json.dumps(body) if isinstance(body, dict) else body))  # fmt: skip
    sign_in(page, served, hash="#/unit/0101234565")
    page.wait_for_selector("#unit .error")
    text = page.inner_text("#unit .error")
    for part in shown:
        assert part in text, text
    no_raw_json_or_utc(text)
    assert "<html>" not in text
