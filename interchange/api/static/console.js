/* The interchange web console: plain JavaScript over the JSON API (SPEC §5).
   The API key is typed once and kept in sessionStorage; pages are #/ routes:
   #/ (search), #/dossier/ID, #/book/PID, #/unit/MST, #/verify, #/lookups/PID. */
"use strict";

const KEY_STORE = "interchange.key", LANG_STORE = "interchange.lang";
const VN_OFFSET_MS = 7 * 3600 * 1000;
let lang = localStorage.getItem(LANG_STORE) === "en" ? "en" : "vi";
let catalogue = null;  // code -> {text_vi, text_en, severity, layer}
let me = null;  // the caller's key (GET /api/v1/key)
const TRAIL_STORE = "interchange.trail";  // {at: this page's cursor, trail: the cursors of the pages before}
function trailFor(cursor) {
  let saved = null;
  try { saved = JSON.parse(sessionStorage.getItem(TRAIL_STORE) || "null"); } catch (_) { saved = null; }
  if (saved && saved.at === cursor && Array.isArray(saved.trail)) return saved.trail;
  return cursor ? null : [];  // a page reached by a link: what came before is not known
}
const saveTrail = (at, trail) => sessionStorage.setItem(TRAIL_STORE, JSON.stringify({at, trail}));

// ---- words ------------------------------------------------------------------------------------
const W = {
  "brand": ["Giao dịch điện tử BHXH", "SI e-transactions"],
  "nav.dossiers": ["Hồ sơ", "Dossiers"], "nav.book": ["Sổ BHXH", "e-SI book"], "nav.unit": ["Đơn vị", "Unit"],
  "nav.verify": ["Xác minh chữ ký", "Verify a signature"], "nav.lookups": ["Tra cứu thẻ BHYT", "HI card lookups"],
  "logout": ["Đổi khóa", "Change key"], "footer.time": ["Giờ Việt Nam (UTC+07:00)", "Vietnam time (UTC+07:00)"],
  "login.title": ["Nhập khóa API", "Enter your API key"],
  "login.note": ["Khóa chỉ được giữ trong thẻ trình duyệt này (sessionStorage) và bị xóa khi đóng thẻ.",
                 "The key stays in this browser tab only (sessionStorage) and is gone when the tab closes."],
  "login.key": ["Khóa API", "API key"], "login.go": ["Đăng nhập", "Sign in"],
  "role": ["Vai trò", "Role"], "loading": ["Đang tải…", "Loading…"],
  "search.title": ["Tìm hồ sơ", "Find dossiers"], "search.go": ["Tìm", "Search"], "search.clear": ["Xóa lọc", "Clear"],
  "f.so_ho_so": ["Số hồ sơ", "Dossier number"], "f.so_ho_so.hint": ["Số hồ sơ, hoặc mã giao dịch (32 ký tự)", "Dossier number, or transaction id (32 characters)"],
  "f.mst": ["Mã số thuế đơn vị", "Unit tax code (MST)"],
  "f.period": ["Kỳ kê khai (MM/yyyy)", "Period (MM/yyyy)"], "f.procedure": ["Thủ tục", "Procedure"],
  "f.state": ["Trạng thái", "State"], "f.from": ["Nhận từ ngày", "Received from"], "f.to": ["Nhận đến ngày", "Received to"],
  "f.limit": ["Số dòng", "Rows"], "any": ["(tất cả)", "(any)"],
  "col.number": ["Số hồ sơ", "Number"], "col.id": ["Mã giao dịch", "Transaction id"], "col.unit": ["Đơn vị", "Unit"],
  "col.procedure": ["Thủ tục", "Procedure"], "col.period": ["Kỳ", "Period"], "col.state": ["Trạng thái", "State"],
  "col.received": ["Nhận lúc", "Received"], "col.due": ["Hạn trả kết quả", "Result due"],
  "none": ["Không có hồ sơ nào khớp.", "No dossier matches."],
  "prev": ["‹ Trang trước", "‹ Previous"], "next": ["Trang sau ›", "Next ›"], "page": ["Trang", "Page"],
  "st.received": ["Đã tiếp nhận", "Received"], "st.accepted": ["Chấp nhận", "Accepted"],
  "st.rejected": ["Không chấp nhận", "Rejected"], "st.refused": ["Từ chối tiếp nhận", "Refused"],
  "d.title": ["Hồ sơ", "Dossier"], "d.summary": ["Thông tin chung", "Summary"], "d.ivan": ["I-VAN", "I-VAN"],
  "d.result_at": ["Có kết quả lúc", "Result at"], "d.overdue": ["Quá hạn", "Overdue"], "d.size": ["Kích thước", "Size"],
  "d.sha256": ["SHA-256", "SHA-256"], "d.idem": ["Idempotency-Key", "Idempotency-Key"],
  "d.params": ["Tham số pháp lý", "Legal parameters"], "d.layers": ["Các tầng kiểm tra", "Layers"],
  "layer.envelope": ["Phong bì", "Envelope"], "layer.signature": ["Chữ ký số", "Signature"],
  "layer.schema": ["Lược đồ XSD", "Schema"], "layer.rule": ["Nghiệp vụ", "Rules"], "layer.transport": ["Truyền nhận", "Transport"],
  "ls.passed": ["đạt", "passed"], "ls.failed": ["không đạt", "failed"], "ls.not_run": ["chưa chạy", "not run"],
  "ls.pending": ["đang chờ", "pending"],
  "d.receipt_errors": ["Lỗi và cảnh báo khi tiếp nhận", "Errors and warnings at receipt"],
  "d.result_errors": ["Lỗi và cảnh báo của kết quả", "Errors and warnings of the result"],
  "d.no_problems": ["Không có lỗi hay cảnh báo.", "No errors or warnings."],
  "d.no_result": ["Chưa có kết quả.", "No result yet."],
  "e.severity": ["Mức", "Severity"], "e.code": ["Mã", "Code"], "e.layer": ["Tầng", "Layer"], "e.form": ["Tờ khai", "Form"],
  "e.place": ["Vị trí", "Place"], "e.line": ["dòng", "line"], "e.value": ["Giá trị", "Value"], "e.text": ["Mô tả", "Description"],
  "sev.error": ["Lỗi", "Error"], "sev.warning": ["Cảnh báo", "Warning"],
  "d.signers": ["Người ký", "Signers"], "s.document": ["Tài liệu", "Document"], "s.subject": ["Chủ thể", "Subject"],
  "s.mst": ["MST", "Tax code"], "s.issuer": ["Tổ chức cấp", "Issuer"], "s.validity": ["Hiệu lực chứng thư", "Validity"],
  "s.signed_at": ["Thời điểm ký", "Signing time"], "s.revocation": ["Tình trạng thu hồi", "Revocation"],
  "s.valid": ["Chữ ký", "Signature"], "s.ok": ["hợp lệ", "valid"], "s.bad": ["không hợp lệ", "not valid"],
  "s.intact": ["chữ ký toàn vẹn", "signature intact"], "s.broken": ["chữ ký bị sai lệch", "signature broken"],
  "s.trusted": ["chứng thư tin cậy", "certificate trusted"], "s.untrusted": ["chứng thư không tin cậy", "certificate not trusted"],
  "s.from": ["từ", "from"], "s.to": ["đến", "to"], "s.none": ["Không có chữ ký.", "No signature."], "s.serial": ["Số sê-ri", "Serial"],
  "rev.good": ["chưa bị thu hồi", "not revoked"], "rev.revoked": ["đã bị thu hồi", "revoked"],
  "rev.unknown": ["không xác định", "unknown"], "rev.checked": ["kiểm tra lúc", "checked at"],
  "d.files": ["Thông báo và tệp", "Notices and files"], "d.original": ["Hồ sơ gốc (XML)", "Original (XML)"],
  "d.evidence": ["Gói chứng cứ (ZIP)", "Evidence bundle (ZIP)"],
  "n.tiep-nhan": ["Thông báo tiếp nhận", "Receipt notice"], "n.tu-choi": ["Thông báo từ chối", "Refusal notice"],
  "n.ket-qua": ["Thông báo kết quả", "Result notice"], "n.bhxh-tiep-nhan": ["Tiếp nhận của BHXH", "Agency's receipt"],
  "n.bhxh-tu-choi": ["Từ chối của BHXH", "Agency's refusal"],
  "d.work": ["Công việc xử lý", "Work"], "w.kind": ["Loại", "Kind"], "w.state": ["Trạng thái", "State"],
  "w.due": ["Hạn", "Due"], "w.done": ["Xong lúc", "Done at"], "w.attempts": ["Số lần", "Attempts"], "w.error": ["Lỗi gần nhất", "Last error"],
  "d.deliveries": ["Gửi thông báo (callback, e-mail)", "Deliveries (callback, e-mail)"],
  "dl.notice": ["Thông báo", "Notice"], "dl.channel": ["Kênh", "Channel"], "dl.target": ["Nơi nhận", "Recipient"],
  "dl.state": ["Trạng thái", "State"], "dl.attempts": ["Các lần gửi", "Attempts"], "dl.next": ["Lần tới", "Next try"],
  "dl.none": ["Không có lần gửi nào.", "No deliveries."],
  "d.forwarding": ["Chuyển tiếp lên cơ quan BHXH", "Forwarding upstream"],
  "fw.none": ["Hồ sơ này không được chuyển tiếp.", "This dossier is not forwarded upstream."],
  "fw.upstream": ["Mã bên nhận", "Upstream id"], "fw.forwarded": ["Chuyển lúc", "Forwarded at"],
  "fw.tries": ["Các lần thử", "Tries"],
  "d.unit_link": ["Đăng ký của đơn vị", "The unit's registration"], "d.unit_list": ["Các hồ sơ của đơn vị", "The unit's dossiers"],
  "yes": ["có", "yes"], "no": ["không", "no"], "back": ["‹ Danh sách", "‹ List"],
  "b.title": ["Sổ BHXH điện tử", "Electronic SI book"], "b.pid": ["Số định danh hoặc mã số BHXH", "Personal ID or SI code"],
  "b.pid.hint": ["Số định danh cá nhân (12 chữ số) hoặc mã số BHXH (10 chữ số)", "Personal ID (12 digits) or SI code (10 digits)"], "b.as_of": ["Đến tháng (MM/yyyy)", "As of (MM/yyyy)"],
  "b.go": ["Xem sổ", "Show book"], "b.identity": ["Người tham gia", "Person"], "b.name": ["Họ tên", "Name"],
  "b.si": ["Mã số BHXH", "SI code"], "b.personal": ["Số định danh", "Personal ID"], "b.birth": ["Ngày sinh", "Birth date"],
  "b.gender": ["Giới tính", "Gender"], "b.periods": ["Quá trình đóng", "Contribution periods"],
  "b.from": ["Từ tháng", "From"], "b.to": ["Đến tháng", "To"], "b.months": ["Số tháng", "Months"],
  "b.position": ["Chức vụ", "Position"], "b.salary": ["Mức lương", "Salary"], "b.rate": ["Tỷ lệ", "Rate"],
  "b.monthly": ["Mỗi tháng (ĐV / NLĐ)", "Monthly (employer / employee)"], "b.total": ["Cộng", "Total"],
  "b.totals": ["Tổng đã đóng", "Total paid"], "b.benefits": ["Chế độ đã hưởng", "Benefits"],
  "b.regime": ["Chế độ", "Regime"], "b.days": ["Số ngày", "Days"], "b.notes": ["Ghi chú", "Notes"],
  "b.none": ["Chưa có.", "None."], "b.open": ["đang đóng", "open"],
  "u.title": ["Đăng ký giao dịch điện tử của đơn vị", "A unit's e-transaction registration"],
  "u.mst": ["Mã số thuế", "Tax code (MST)"], "u.go": ["Xem", "Show"], "u.code": ["Mã đơn vị", "Unit code"],
  "u.name": ["Tên đơn vị", "Name"], "u.state": ["Trạng thái", "State"], "u.email": ["Thư điện tử", "E-mail"],
  "u.address": ["Địa chỉ", "Address"], "u.contact": ["Người liên hệ", "Contact"],
  "u.channel": ["Cách nhận kết quả", "Result channel"], "u.updated": ["Cập nhật lúc", "Updated at"],
  "u.registration": ["Hồ sơ đăng ký", "Registration dossier"],
  "us.active": ["đang giao dịch", "active"], "us.stopped": ["đã ngừng", "stopped"],
  "v.title": ["Xác minh tệp đã ký", "Verify a signed file"],
  "v.note": ["Chọn một hồ sơ (Hoso), một tờ khai hay một thông báo đã ký số (XML). Tệp không được lưu.",
             "Choose a signed dossier (Hoso), form or notice (XML). The file is not stored."],
  "v.file": ["Tệp XML", "XML file"], "v.go": ["Xác minh", "Verify"], "v.ok": ["Mọi chữ ký hợp lệ", "Every signature is valid"],
  "v.bad": ["Có chữ ký không hợp lệ", "A signature is not valid"], "v.pick": ["Hãy chọn một tệp.", "Choose a file first."],
  "v.none": ["Không kiểm tra được chữ ký nào", "No signature could be checked"], "v.problems": ["Vấn đề", "Problems"],
  "l.title": ["Nhật ký tra cứu thẻ BHYT của một người", "A person's e-HI card lookup log"],
  "l.note": ["Dành cho kiểm toán viên: mọi lần cơ sở y tế tra cứu thẻ của người này.",
             "For auditors: every time a health facility looked up this person's card."],
  "l.at": ["Lúc", "At"], "l.facility": ["Cơ sở y tế", "Facility"], "l.key": ["Khóa", "Key"],
  "l.asked": ["Mã đã hỏi", "ID asked"], "l.outcome": ["Kết quả", "Outcome"], "l.none": ["Chưa có lần tra cứu nào.", "No lookups yet."],
  "err.title": ["Không thực hiện được", "Could not be done"], "err.network": ["Không kết nối được máy chủ.", "The server cannot be reached."],
  "err.key": ["Khóa API sai hoặc đã bị thu hồi. Hãy nhập lại.", "The API key is wrong or revoked. Enter it again."],
  "download.failed": ["Tải xuống không được", "Download failed"],
  "g.1": ["Nam", "Male"], "g.0": ["Nữ", "Female"],
  "dls.pending": ["đang chờ gửi lại", "pending"], "dls.delivered": ["đã gửi", "delivered"],
  "dls.failed": ["gửi không được", "failed"], "dls.skipped": ["bỏ qua", "skipped"],
  "ws.queued": ["đang chờ", "queued"], "ws.running": ["đang chạy", "running"], "ws.done": ["xong", "done"],
  "ws.failed": ["đã dừng vì lỗi", "failed"],
  "lo.valid": ["thẻ còn giá trị", "card valid"], "lo.not_valid": ["thẻ hết giá trị", "card not valid"],
  "lo.suspended": ["thẻ tạm dừng", "card suspended"], "lo.unknown": ["không có người này", "unknown person"],
  "lo.mismatch": ["họ tên hoặc ngày sinh không khớp", "name or birth date does not agree"],
};
const STATUS_TEXT = {
  400: ["Yêu cầu không hợp lệ.", "The request is not valid."], 401: ["Thiếu hoặc sai khóa API.", "A valid API key is required."],
  403: ["Khóa API này không được phép.", "This API key may not do this."], 404: ["Không tìm thấy (hoặc bạn không được xem).", "Not found (or not yours to see)."],
  409: ["Xung đột với yêu cầu trước.", "Conflicts with an earlier request."], 413: ["Tệp quá lớn.", "The file is too large."],
  415: ["Kiểu nội dung không được hỗ trợ.", "Unsupported content type."], 422: ["Nội dung không xử lý được.", "The content cannot be processed."],
  429: ["Quá nhiều yêu cầu; hãy thử lại sau.", "Too many requests; retry later."], 500: ["Lỗi máy chủ.", "Server error."],
  503: ["Máy chủ đang bận hoặc một thành phần không hoạt động; hãy thử lại sau.", "The server is busy or a part is down; retry later."],
};
const t = k => (W[k] ? W[k][lang === "en" ? 1 : 0] : k);
const word = (prefix, value) => esc(W[prefix + value] ? t(prefix + value) : value ?? "");
/** A YYYY-MM-DD date as dd/MM/yyyy. */
const day = iso => (typeof iso === "string" && /^\d{4}-\d\d-\d\d$/.test(iso) ? iso.split("-").reverse().join("/") : esc(iso ?? "—"));
const both = k => (W[k] ? W[k][0] + (W[k][0] === W[k][1] ? "" : " / " + W[k][1]) : k);

// ---- small helpers ----------------------------------------------------------------------------
const $ = (sel, root = document) => root.querySelector(sel);
const esc = s => String(s ?? "").replace(/[&<>"']/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
const pad = n => String(n).padStart(2, "0");
/** An ISO time as Vietnam's local time: dd/MM/yyyy HH:mm:ss (+07:00), no fractions. */
function when(iso) {
  if (!iso) return "—";
  const ms = Date.parse(iso);
  if (Number.isNaN(ms)) return esc(iso);
  const d = new Date(ms + VN_OFFSET_MS);
  return `<time datetime="${esc(iso)}"><span>${pad(d.getUTCDate())}/${pad(d.getUTCMonth() + 1)}/${d.getUTCFullYear()} ` +
    `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}</span><small> +07:00</small></time>`;
}
/** Free text from the server (a last error...) with any ISO time in it shown as local time. */
const ISO_IN_TEXT = /\d{4}-\d\d-\d\dT\d\d:\d\d(?::\d\d(?:\.\d+)?)?(?:Z|[+-]\d\d:?\d\d)/g;
const prose = text => esc(text ?? "").replace(ISO_IN_TEXT, m => when(m));
/** A day typed as dd/mm/yyyy (or YYYY-MM-DD) as YYYY-MM-DD; null when it is no calendar day. */
function isoDay(text) {
  const m = /^(\d{1,2})\/(\d{1,2})\/(\d{4})$/.exec(text || "") || /^(\d{4})-(\d{2})-(\d{2})$/.exec(text || "");
  if (!m) return null;
  const [y, mo, d] = m[1].length === 4 ? [+m[1], +m[2], +m[3]] : [+m[3], +m[2], +m[1]];
  const probe = new Date(Date.UTC(y, mo - 1, d));
  if (probe.getUTCFullYear() !== y || probe.getUTCMonth() !== mo - 1 || probe.getUTCDate() !== d) return null;
  return `${y}-${pad(mo)}-${pad(d)}`;
}
/** A YYYY-MM-DD date of the form as its first moment in Vietnam, ISO with +07:00 (`days` later). */
function vnDay(value, days = 0) {
  const [y, m, d] = value.split("-").map(Number);
  const day = new Date(Date.UTC(y, m - 1, d + days));
  return `${day.getUTCFullYear()}-${pad(day.getUTCMonth() + 1)}-${pad(day.getUTCDate())}T00:00:00+07:00`;
}
const money = n => (n === null || n === undefined || n === "" ? "—" : Number(n).toLocaleString("vi-VN") + " ₫");
const stateBadge = s => `<span class="badge st-${esc(s)}">${esc(W["st." + s] ? t("st." + s) : s)}</span>`;
const table = (heads, rows, cls = "") => `<div class="tablewrap"><table class="${cls}"><thead><tr>${heads.map(h => `<th>${esc(t(h))}</th>`).join("")}` +
  `</tr></thead><tbody>${rows.join("")}</tbody></table></div>`;
const kv = pairs => `<table class="kv"><tbody>${pairs.map(([k, v]) => `<tr><th>${esc(t(k))}</th><td>${v}</td></tr>`).join("")}</tbody></table>`;
const bilingual = (vi, en) => `<span class="vi">${esc(vi)}</span>${en && en !== vi ? ` <span class="en" lang="en">${esc(en)}</span>` : ""}`;

// ---- the API ----------------------------------------------------------------------------------
class ApiError extends Error {
  constructor(status, code, vi, en, place) { super(en || vi || String(status)); Object.assign(this, {status, code, vi, en, place}); }
}
const key = () => sessionStorage.getItem(KEY_STORE);

/** Vietnamese and English text of an error answer, whatever its shape: the old {code, message};
    RFC 9457 problem+json with Vietnamese `title`/`detail` beside `title_en`/`detail_en`; plain
    RFC 9457 (English title/detail); *_vi fields. Then the code's catalogue text, then the status. */
async function problemOf(resp) {
  let body = null;
  try { body = JSON.parse(await resp.text()); } catch (_) { body = null; }
  if (!body || typeof body !== "object") body = {};
  const pick = (...names) => names.map(n => n.split(".").reduce((o, p) => (o && typeof o === "object" ? o[p] : undefined), body))
    .find(v => typeof v === "string" && v.trim());
  const code = pick("code", "type_code");
  const known = (catalogue && code && catalogue[code]) || null;
  const status = STATUS_TEXT[resp.status] || [`Lỗi HTTP ${resp.status}.`, `HTTP error ${resp.status}.`];
  const bilingualProblem = typeof body.detail_en === "string" || typeof body.title_en === "string";  // detail/title are Vietnamese
  const vi = pick("detail_vi", "message_vi", ...(bilingualProblem ? ["detail"] : []), "title_vi", ...(bilingualProblem ? ["title"] : []))
    || (known && known.text_vi) || status[0];
  const en = pick("detail_en", "message_en", ...(bilingualProblem ? [] : ["detail"]), "message", "title_en", ...(bilingualProblem ? [] : ["title"]))
    || (known && known.text_en) || status[1];
  const sub = Array.isArray(body.errors) ? body.errors.map(e => (typeof e === "string" ? e : e && (e.detail || e.message || e.msg))).filter(Boolean) : [];
  let place = pick("parameter", "pointer", "place", "xpath");
  if (Array.isArray(body.allowed) && body.allowed.length) place = `${place || ""} ∈ {${body.allowed.join(", ")}}`.trim();
  return new ApiError(resp.status, code, vi, [en, ...sub].join(" — "), place);
}

async function api(path, {method = "GET", body, type, raw} = {}) {
  const headers = {Accept: "application/json"};
  if (key()) headers.Authorization = "Bearer " + key();
  if (type) headers["Content-Type"] = type;
  let resp;
  try { resp = await fetch(path, {method, headers, body}); } catch (_) {
    throw new ApiError(0, "NETWORK", W["err.network"][0], W["err.network"][1]);
  }
  if (!resp.ok) {
    const err = await problemOf(resp);
    if (resp.status === 401) { sessionStorage.removeItem(KEY_STORE); me = null; err.vi = W["err.key"][0]; err.en = W["err.key"][1]; }
    throw err;
  }
  return raw ? resp : resp.json();
}

function errorBox(err) {
  const e = err instanceof ApiError ? err : new ApiError(0, "", String(err), "");
  return `<div class="error" role="alert" data-code="${esc(e.code || "")}"><strong>${esc(t("err.title"))}</strong>` +
    `${e.code ? ` <code>${esc(e.code)}</code>` : ""}${e.status ? ` <span class="muted">HTTP ${e.status}</span>` : ""}` +
    `<p>${bilingual(e.vi, e.en)}</p>${e.place ? `<p class="muted">${esc(t("e.place"))}: <code>${esc(e.place)}</code></p>` : ""}</div>`;
}

async function download(path, name, btn) {
  try {
    const blob = await (await api(path, {raw: true})).blob();
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob); a.download = name;
    document.body.appendChild(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  } catch (err) {
    btn.insertAdjacentHTML("afterend", errorBox(err));
  }
}

// ---- routing and the frame --------------------------------------------------------------------
const view = () => $("#view");
function route() {
  const hash = location.hash.replace(/^#\/?/, "");
  const [pathPart, query = ""] = hash.split("?");
  const parts = pathPart.split("/").filter(Boolean).map(decodeURIComponent);
  // #/dossier/00001/2026/BHXH: a dossier number has slashes of its own
  return {page: parts[0] || "dossiers", arg: parts.slice(1).join("/"), params: new URLSearchParams(query)};
}
const PAGES = {};

function translateStatic() {
  document.documentElement.lang = lang;
  document.querySelectorAll("[data-t]").forEach(el => { el.textContent = t(el.dataset.t); });
  $("#lang-vi").classList.toggle("on", lang === "vi"); $("#lang-en").classList.toggle("on", lang === "en");
  document.title = `${t("brand")} — interchange`;
}

async function render() {
  delete document.body.dataset.ready;
  try { await show(); } finally { document.body.dataset.ready = location.hash || "#/"; }  // for tests and scripts
}

async function show() {
  translateStatic();
  const r = route();
  document.querySelectorAll("#nav a").forEach(a => a.classList.toggle("on", a.dataset.nav === (r.page === "dossier" ? "dossiers" : r.page)));
  if (!key()) {
    $("#login").hidden = false; $("#logout").hidden = true; $("#who").textContent = ""; view().innerHTML = "";
    $("#key").focus();
    return;
  }
  $("#login").hidden = true; $("#logout").hidden = false;
  view().innerHTML = `<p class="muted">${esc(t("loading"))}</p>`;
  try {
    if (!catalogue) await loadCatalogue();
    if (!me) me = await api("/api/v1/key");
    $("#who").textContent = `${t("role")}: ${me.role}${me.mst ? " · MST " + me.mst : ""}${me.ivan ? " · I-VAN " + me.ivan : ""}`;
    await (PAGES[r.page] || PAGES.dossiers)(r);
  } catch (err) {
    if (!key()) { await show(); $("#login-error").innerHTML = errorBox(err); return; }
    view().innerHTML = (r.page === "dossier" ? `<p><a href="#/" class="link">${esc(t("back"))}</a></p>` : "") + errorBox(err);
  }
}

async function loadCatalogue() {
  try {
    catalogue = Object.fromEntries((await api("/api/v1/codes")).codes.map(c => [c.code, c]));
  } catch (err) {
    catalogue = {};
    if (err.status === 401) throw err;  // the key is wrong: said on the sign-in form
  }
}

function form(id, fields, submitLabel, extra = "") {
  return `<form id="${id}" class="filters">${fields.map(([name, label, input]) =>
    `<label><span>${esc(t(label))}</span>${input || `<input name="${name}">`}</label>`).join("")}` +
    `<div class="actions"><button type="submit" class="primary">${esc(t(submitLabel))}</button>${extra}</div></form>`;
}
function fill(formEl, params) {
  for (const el of formEl.elements) if (el.name && params.has(el.name)) el.value = params.get(el.name);
}
function toHash(page, values) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(values)) if (v !== "" && v !== null && v !== undefined) q.set(k, v);
  const s = q.toString();
  return `#/${page}${s ? "?" + s : ""}`;
}
const go = hash => { if (location.hash === hash) render(); else location.hash = hash; };

// ---- #/ : search dossiers --------------------------------------------------------------------
const STATES = ["received", "accepted", "rejected", "refused"];
const PROCEDURES = ["600", "600a", "600b", "600c", "601", "602", "604", "605", "606", "607", "608", "04/DK-IVAN", "05/DK-IVAN"];
const FILTERS = ["so_ho_so", "mst", "period", "procedure", "state", "from", "to"];

PAGES.dossiers = async ({params}) => {
  const stateSelect = `<select name="state"><option value="">${esc(t("any"))}</option>${STATES.map(s =>
    `<option value="${s}">${esc(t("st." + s))}</option>`).join("")}</select>`;
  const limitSelect = `<select name="limit">${[5, 10, 20, 50, 100].map(n => `<option>${n}</option>`).join("")}</select>`;
  view().innerHTML = `<h1>${esc(t("search.title"))}</h1>` + form("search", [
    ["so_ho_so", "f.so_ho_so", `<input name="so_ho_so" placeholder="00001/2026/BHXH" title="${esc(t("f.so_ho_so.hint"))}">`],
    ["mst", "f.mst", `<input name="mst" inputmode="numeric" placeholder="0101234565">`],
    ["period", "f.period", `<input name="period" placeholder="11/2026">`],
    ["procedure", "f.procedure", `<input name="procedure" list="procedures" placeholder="600"><datalist id="procedures">` +
      PROCEDURES.map(p => `<option value="${esc(p)}">`).join("") + "</datalist>"],
    ["state", "f.state", stateSelect],
    ["from", "f.from", `<input name="from" placeholder="dd/mm/yyyy" inputmode="numeric" autocomplete="off">`],
    ["to", "f.to", `<input name="to" placeholder="dd/mm/yyyy" inputmode="numeric" autocomplete="off">`],
    ["limit", "f.limit", limitSelect],
  ], "search.go", `<button type="button" id="clear" class="link">${esc(t("search.clear"))}</button>`) + `<div id="results"></div>`;
  const f = $("#search");
  fill(f, params);
  for (const name of ["from", "to"]) if (isoDay(params.get(name))) f.elements[name].value = day(isoDay(params.get(name)));
  if (!params.has("limit")) f.elements.limit.value = "20";
  f.onsubmit = ev => {
    ev.preventDefault();
    const values = Object.fromEntries(new FormData(f));
    values.so_ho_so = (values.so_ho_so || "").trim(); values.mst = (values.mst || "").trim();
    for (const name of ["from", "to"]) {
      const typed = (values[name] || "").trim();
      values[name] = typed && (isoDay(typed) || typed);  // dd/mm/yyyy (or YYYY-MM-DD) kept as YYYY-MM-DD
    }
    if (/^[0-9a-f]{32}$/i.test(values.so_ho_so)) { go(`#/dossier/${values.so_ho_so}`); return; }  // a transaction id
    go(toHash("dossiers", values));
  };
  $("#clear").onclick = () => go("#/dossiers");
  await listResults(params);
};

async function listResults(params) {
  const q = new URLSearchParams();
  const out = $("#results");
  for (const name of FILTERS) {
    const v = (params.get(name) || "").trim();
    if (!v) continue;
    if (name === "from" || name === "to") {
      const iso = isoDay(v);
      if (!iso) {
        out.innerHTML = errorBox(new ApiError(0, "", `Ngày "${v}" không hợp lệ; hãy viết dd/mm/yyyy.`, `"${v}" is not a date; write dd/mm/yyyy.`, t("f." + name)));
        return;
      }
      q.set(name, name === "from" ? vnDay(iso) : vnDay(iso, 1));  // whole days in Vietnam; `to` is exclusive
    } else q.set(name, v);
  }
  q.set("limit", params.get("limit") || "20");
  if (params.get("cursor")) q.set("cursor", params.get("cursor"));
  let page;
  try { page = await api("/api/v1/dossiers?" + q); } catch (err) { out.innerHTML = errorBox(err); return; }
  // A number typed in full finds one dossier: open it.
  if (params.get("so_ho_so") && page.items.length === 1 && !params.get("cursor") && params.get("open") !== "no") {
    location.replace(`#/dossier/${encodeURIComponent(page.items[0].id)}`);
    return;
  }
  const rows = page.items.map(d => `<tr data-id="${esc(d.id)}">
      <td><a href="#/dossier/${encodeURIComponent(d.id)}">${esc(d.so_ho_so || "—")}</a></td>
      <td><a href="#/dossier/${encodeURIComponent(d.id)}" class="mono" title="${esc(d.id)}">${esc(d.id.slice(0, 12))}…</a></td>
      <td>${d.unit.mst ? `<a href="#/unit/${encodeURIComponent(d.unit.mst)}">${esc(d.unit.mst)}</a>` : "—"}<br><small>${esc(d.unit.name || "")}</small></td>
      <td>${esc(d.procedure || "—")}</td><td>${esc(d.period || "—")}</td><td>${stateBadge(d.state)}${d.overdue ? ` <span class="badge warn">${esc(t("d.overdue"))}</span>` : ""}</td>
      <td>${when(d.received_at)}</td><td>${when(d.due_at)}</td></tr>`);
  const here = params.get("cursor") || "", trail = trailFor(here);
  const pageNo = trail ? trail.length + 1 : null;
  out.innerHTML = (rows.length ? table(["col.number", "col.id", "col.unit", "col.procedure", "col.period", "col.state", "col.received", "col.due"], rows, "list")
    : `<p class="empty">${esc(t("none"))}</p>`) +
    `<nav class="pager"><button type="button" id="prev" ${pageNo === 1 ? "disabled" : ""}>${esc(t("prev"))}</button>` +
    `<span>${esc(t("page"))} ${pageNo || "…"}</span>` +
    `<button type="button" id="next" ${page.next_cursor ? "" : "disabled"}>${esc(t("next"))}</button></nav>`;
  const base = Object.fromEntries(params); delete base.cursor;
  $("#next").onclick = () => { saveTrail(page.next_cursor, [...(trail || [""]), here]); go(toHash("dossiers", {...base, cursor: page.next_cursor})); };
  $("#prev").onclick = () => {
    const before = (trail || [""]).slice(0, -1), back = trail && trail.length ? trail[trail.length - 1] : "";
    saveTrail(back, before); go(toHash("dossiers", {...base, cursor: back}));
  };
}

// ---- #/dossier/ID ----------------------------------------------------------------------------
const SO_HO_SO = /^\d+\/\d{4}\/\S+$/;  // NNNNN/YYYY/<office>

PAGES.dossier = async ({arg}) => {
  if (SO_HO_SO.test(arg)) {  // a dossier number rather than a transaction id: find it
    const found = await api(`/api/v1/dossiers?limit=1&so_ho_so=${encodeURIComponent(arg)}`);
    if (!found.items.length) throw new ApiError(404, "NOT-FOUND", `Không có hồ sơ số ${arg} (hoặc bạn không được xem).`, `No dossier numbered ${arg} (or not yours to see).`);
    location.replace(`#/dossier/${encodeURIComponent(found.items[0].id)}`);
    return;
  }
  const d = await api(`/api/v1/dossiers/${encodeURIComponent(arg)}`);
  const base = `/api/v1/dossiers/${encodeURIComponent(d.id)}`;
  const receipt = d.errors.filter(p => p.layer !== "rule"), result = d.errors.filter(p => p.layer === "rule");
  const layers = ["envelope", "signature", "schema", "rule"].map(l => {
    const s = d.layers[l] || (l === "rule" && d.state === "received" ? "pending" : "not_run");
    return `<li class="layer ls-${esc(s)}"><span>${esc(t("layer." + l))}</span><b>${esc(t("ls." + s))}</b></li>`;
  }).join("");
  const files = Object.entries(d.notices).map(([kind, path]) =>
    `<button type="button" class="file" data-path="${esc(path)}" data-name="${esc(d.id)}-${esc(kind)}.xml" data-kind="${esc(kind)}">${esc(W["n." + kind] ? t("n." + kind) : kind)}</button>`)
    .concat(`<button type="button" class="file" data-path="${esc(d.original)}" data-name="${esc(d.id)}-original.xml" data-kind="original">${esc(t("d.original"))}</button>`,
            `<button type="button" class="file primary" id="evidence" data-path="${base}/evidence" data-name="evidence-${esc(d.id)}.zip" data-kind="evidence">${esc(t("d.evidence"))}</button>`);
  view().innerHTML = `<p><a href="#/" class="link">${esc(t("back"))}</a></p>
    <h1>${esc(t("d.title"))} ${esc(d.so_ho_so || d.id)} ${stateBadge(d.state)}</h1>
    <div class="grid2"><section class="card"><h2>${esc(t("d.summary"))}</h2>${kv([
      ["col.id", `<span class="mono">${esc(d.id)}</span>`], ["col.number", esc(d.so_ho_so || "—")],
      ["col.unit", d.unit.mst ? `<a href="#/unit/${encodeURIComponent(d.unit.mst)}">${esc(d.unit.mst)}</a> ${esc(d.unit.name || "")} <small>${esc(d.unit.code || "")}</small>` : "—"],
      ["d.ivan", esc(d.ivan_code || "—")], ["col.procedure", esc(d.procedure || "—")], ["col.period", esc(d.period || "—")],
      ["col.received", when(d.received_at)], ["col.due", when(d.due_at)], ["d.result_at", when(d.result_at)],
      ["d.overdue", d.overdue ? `<span class="badge warn">${esc(t("yes"))}</span>` : esc(t("no"))],
      ["d.size", `${Number(d.size).toLocaleString("vi-VN")} B`], ["d.sha256", `<span class="mono small">${esc(d.sha256)}</span>`],
      ["d.idem", esc(d.idempotency_key || "—")],
      ["d.params", d.parameters ? `${esc(d.parameters.version)} <span class="mono small">${esc(String(d.parameters.sha256 || "").slice(0, 16))}…</span>` : "—"],
    ])}${d.unit.mst ? `<p><a href="#/unit/${encodeURIComponent(d.unit.mst)}">${esc(t("d.unit_link"))}</a> · <a href="${toHash("dossiers", {mst: d.unit.mst})}">${esc(t("d.unit_list"))}</a></p>` : ""}</section>
    <section class="card"><h2>${esc(t("d.layers"))}</h2><ul class="layers" id="layers">${layers}</ul>
    <h2>${esc(t("d.files"))}</h2><div class="files" id="files">${files.join("")}</div></section></div>
    <section class="card" id="receipt-errors"><h2>${esc(t("d.receipt_errors"))}</h2>${problemTable(receipt)}</section>
    <section class="card" id="result-errors"><h2>${esc(t("d.result_errors"))}</h2>${
      d.layers.rule || d.result_at ? problemTable(result) : `<p class="empty">${esc(t("d.no_result"))}</p>`}</section>
    <section class="card" id="signers"><h2>${esc(t("d.signers"))}</h2>${signerTable(d.signers)}</section>
    ${d.work && d.work.length ? `<section class="card" id="work"><h2>${esc(t("d.work"))}</h2>${workTable(d.work)}</section>` : ""}
    <section class="card" id="deliveries"><h2>${esc(t("d.deliveries"))}</h2><p class="muted">${esc(t("loading"))}</p></section>
    <section class="card" id="forwarding"><h2>${esc(t("d.forwarding"))}</h2><p class="muted">${esc(t("loading"))}</p></section>`;
  view().querySelectorAll("button.file").forEach(b => { b.onclick = () => download(b.dataset.path, b.dataset.name, b); });
  await Promise.all([showDeliveries(base), showForwarding(base)]);
};

function problemTable(problems) {
  if (!problems.length) return `<p class="empty ok">${esc(t("d.no_problems"))}</p>`;
  return table(["e.severity", "e.code", "e.layer", "e.form", "e.place", "e.value", "e.text"], problems.map(p => {
    const sev = p.severity === "warning" ? "warning" : "error";
    return `<tr class="sev-${sev}"><td><span class="badge ${sev === "warning" ? "warn" : "bad"}">${esc(t("sev." + sev))}</span></td>` +
      `<td><code>${esc(p.code)}</code></td><td>${esc(W["layer." + p.layer] ? t("layer." + p.layer) : p.layer || "")}</td><td>${esc(p.form || "")}</td>` +
      `<td><code class="small">${esc(p.xpath || "")}</code>${p.line ? ` <small>(${esc(t("e.line"))} ${esc(p.line)})</small>` : ""}</td>` +
      `<td>${esc(p.value ?? "")}</td><td class="problem-text">${bilingual(p.message_vi, p.message_en)}</td></tr>`;
  }), "problems");
}

function revocationText(rev) {
  if (!rev) return "—";
  const s = rev.status || "unknown";
  const cls = s === "good" ? "ok" : s === "revoked" ? "bad" : "neutral";
  return `<span class="badge ${cls}">${esc(W["rev." + s] ? t("rev." + s) : s)}</span>${rev.source ? ` <small>${esc(rev.source)}</small>` : ""}` +
    (rev.checked_at ? `<br><small>${esc(t("rev.checked"))} ${when(rev.checked_at)}</small>` : "");
}

const commonName = dn => { const m = /(?:^|,)\s*CN=((?:\\,|[^,])+)/.exec(dn || ""); return m ? m[1].replace(/\\,/g, ",") : dn; };

/** Whether the cryptography holds apart from whether the certificate is trusted, when the report says. */
function checks(s) {
  const part = (value, yes, no) => (typeof value === "boolean" ? `<div class="small ${value ? "ok-text" : "bad-text"}">${esc(t(value ? yes : no))}</div>` : "");
  return part(s.signature_intact ?? s.intact, "s.intact", "s.broken") + part(s.certificate_trusted ?? s.trusted, "s.trusted", "s.untrusted");
}

function signerTable(signers) {
  if (!signers || !signers.length) return `<p class="empty">${esc(t("s.none"))}</p>`;
  return table(["s.document", "s.valid", "s.subject", "s.mst", "s.issuer", "s.validity", "s.signed_at", "s.revocation"], signers.map(s => {
    const c = s.signer || {};
    const problems = (s.problems || []).map(p => `<div class="sig-problem"><code>${esc(p.code)}</code> ${bilingual(p.message_vi, p.message_en)}</div>`).join("");
    return `<tr><td>${esc(s.document)}${s.form ? `<br><small>${esc(s.form)}</small>` : ""}</td>` +
      `<td><span class="badge ${s.valid ? "ok" : "bad"}">${esc(t(s.valid ? "s.ok" : "s.bad"))}</span>${checks(s)}${problems}</td>` +
      `<td>${esc(c.common_name || "—")}<br><small class="mono">${esc(c.subject || "")}</small>${c.serial ? `<br><small>${esc(t("s.serial"))} ${esc(c.serial)}</small>` : ""}</td>` +
      `<td>${esc(s.mst || c.mst || "—")}</td><td title="${esc(c.issuer || "")}">${esc(commonName(c.issuer) || "—")}</td>` +
      `<td>${c.not_before ? `<span class="muted">${esc(t("s.from"))}</span> ${when(c.not_before)}<br><span class="muted">${esc(t("s.to"))}</span> ${when(c.not_after)}` : "—"}</td>` +
      `<td>${when(s.signing_time)}</td><td>${revocationText(s.revocation)}</td></tr>`;
  }), "signers");
}

function workTable(work) {
  return table(["w.kind", "w.state", "w.due", "w.done", "w.attempts", "w.error"], work.map(w =>
    `<tr><td><code>${esc(w.kind)}</code></td><td>${word("ws.", w.state)}${w.overdue ? ` <span class="badge warn">${esc(t("d.overdue"))}</span>` : ""}</td>` +
    `<td>${when(w.due_at)}</td><td>${when(w.done_at)}</td><td>${esc(w.attempts)}</td><td>${prose(w.last_error || "")}</td></tr>`));
}

async function showDeliveries(base) {
  const box = $("#deliveries");
  try {
    const {deliveries} = await api(`${base}/deliveries`);
    box.innerHTML = `<h2>${esc(t("d.deliveries"))}</h2>` + (deliveries.length ? table(
      ["dl.notice", "dl.channel", "dl.target", "dl.state", "dl.attempts", "dl.next"], deliveries.map(x =>
        `<tr><td>${esc(W["n." + x.notice] ? t("n." + x.notice) : x.notice)}</td><td>${esc(x.channel)}</td>` +
        `<td class="wrap">${esc(x.target || x.recipient)}</td><td><span class="badge dls-${esc(x.state)}">${word("dls.", x.state)}</span>${x.last_error ? `<br><small>${prose(x.last_error)}</small>` : ""}` +
        `${x.delivered_at ? `<br><small>${when(x.delivered_at)}</small>` : ""}</td>` +
        `<td>${x.attempts.length ? `<ol class="attempts">${x.attempts.map(a => `<li>${when(a.at)} · ${a.status ? `HTTP ${esc(a.status)}` : ""} ${prose(a.error || "")} <small>(${esc(a.duration_ms)} ms)</small></li>`).join("")}</ol>` : esc(x.attempt_count)}</td>` +
        `<td>${when(x.next_at)}</td></tr>`)) : `<p class="empty">${esc(t("dl.none"))}</p>`);
  } catch (err) { box.innerHTML = `<h2>${esc(t("d.deliveries"))}</h2>` + errorBox(err); }
}

async function showForwarding(base) {
  const box = $("#forwarding");
  const head = `<h2>${esc(t("d.forwarding"))}</h2>`;
  try {
    const fw = await api(`${base}/forwarding`);
    box.innerHTML = head + kv([
      ["col.state", esc(fw.state)], ["col.due", when(fw.due_at)], ["fw.forwarded", when(fw.forwarded_at)],
      ["fw.upstream", esc(fw.upstream_id || "—")], ["w.attempts", esc(fw.attempts)], ["dl.next", when(fw.next_try_at)],
      ["w.error", prose(fw.last_error || "—")],
    ]) + (fw.tries.length ? `<h3>${esc(t("fw.tries"))}</h3>` + table(["l.at", "w.kind", "l.outcome", "w.error"], fw.tries.map(x =>
      `<tr><td>${when(x.at)}</td><td>${esc(x.kind)}</td><td>${esc(x.outcome)} ${esc(x.http_status ?? "")}</td><td>${prose(x.error || "")}</td></tr>`)) : "");
  } catch (err) {
    box.innerHTML = head + (err.status === 404 ? `<p class="empty">${esc(t("fw.none"))}</p>` : errorBox(err));
  }
}

// ---- #/book/PID ------------------------------------------------------------------------------
PAGES.book = async ({arg, params}) => {
  view().innerHTML = `<h1>${esc(t("b.title"))}</h1>` + form("book-form", [
    ["pid", "b.pid", `<input name="pid" inputmode="numeric" placeholder="001090123456" title="${esc(t("b.pid.hint"))}" required>`],
    ["as_of", "b.as_of", `<input name="as_of" placeholder="12/2026">`],
  ], "b.go") + `<div id="book"></div>`;
  const f = $("#book-form");
  f.elements.pid.value = arg; fill(f, params);
  f.onsubmit = ev => { ev.preventDefault(); go(`#/book/${encodeURIComponent(f.elements.pid.value.trim())}` + (f.elements.as_of.value.trim() ? `?as_of=${encodeURIComponent(f.elements.as_of.value.trim())}` : "")); };
  if (!arg) return;
  const out = $("#book");
  let b;
  try { b = await api(`/api/v1/persons/${encodeURIComponent(arg)}/book` + (params.get("as_of") ? `?as_of=${encodeURIComponent(params.get("as_of"))}` : "")); }
  catch (err) { out.innerHTML = errorBox(err); return; }
  const i = b.identity;
  out.innerHTML = `<section class="card"><h2>${esc(t("b.identity"))}</h2>${kv([
    ["b.name", `<strong>${esc(i.name || "—")}</strong>`], ["b.si", esc(i.si_code || "—")], ["b.personal", esc(i.personal_id || "—")],
    ["b.birth", day(i.birth_date)], ["b.gender", word("g.", i.gender) || "—"], ["b.as_of", esc(b.as_of)],
  ])}</section>
  <section class="card" id="periods"><h2>${esc(t("b.periods"))}</h2>${b.periods.length ? table(
    ["col.unit", "b.from", "b.to", "b.months", "b.position", "b.salary", "b.rate", "b.monthly", "b.total"], b.periods.map(p =>
      `<tr><td>${esc(p.unit.mst || "")}<br><small>${esc(p.unit.name || "")}</small></td><td>${esc(p.from_month)}</td>` +
      `<td>${esc(p.to_month || t("b.open"))}</td><td>${esc(p.months)}</td><td>${esc(p.position || "")}</td>` +
      `<td>${money(p.salary)}</td><td>${esc(p.rate ?? "")}${p.rate != null ? "%" : ""}</td>` +
      `<td>${money(p.monthly.employer)} / ${money(p.monthly.employee)}${(p.funds || []).map(f =>
        `<br><small title="${esc(f.name || "")}">${esc(f.fund)}: ${money(f.employer)} / ${money(f.employee)}</small>`).join("")}</td><td>${money(p.totals.total)}` +
      `${p.problem ? `<br><small class="warn-text">${esc(p.problem)}</small>` : ""}</td></tr>`)) : `<p class="empty">${esc(t("b.none"))}</p>`}
    <p class="total">${esc(t("b.totals"))}: <strong>${money(b.totals.total)}</strong> <small>(${money(b.totals.employer)} / ${money(b.totals.employee)})</small></p></section>
  <section class="card" id="benefits"><h2>${esc(t("b.benefits"))}</h2>${b.benefits.length ? table(
    ["b.regime", "b.from", "b.to", "b.days", "col.unit", "col.received"], b.benefits.map(x =>
      `<tr><td>${esc(x.regime)} ${esc(x.kind || "")}</td><td>${day(x.from_date)}</td><td>${day(x.to_date)}</td>` +
      `<td>${esc(x.days ?? "")}</td><td>${esc(x.unit.mst || "")}</td><td><a href="#/dossier/${encodeURIComponent(x.dossier_id)}">${when(x.received_at)}</a></td></tr>`))
    : `<p class="empty">${esc(t("b.none"))}</p>`}</section>` +
    (b.notes && b.notes.length ? `<section class="card"><h2>${esc(t("b.notes"))}</h2><ul>${b.notes.map(n => `<li>${esc(n)}</li>`).join("")}</ul></section>` : "");
};

// ---- #/unit/MST ------------------------------------------------------------------------------
PAGES.unit = async ({arg}) => {
  view().innerHTML = `<h1>${esc(t("u.title"))}</h1>` + form("unit-form", [
    ["mst", "u.mst", `<input name="mst" inputmode="numeric" placeholder="0101234565" required>`]], "u.go") + `<div id="unit"></div>`;
  const f = $("#unit-form");
  f.elements.mst.value = arg || (me && me.mst) || "";
  f.onsubmit = ev => { ev.preventDefault(); go(`#/unit/${encodeURIComponent(f.elements.mst.value.trim())}`); };
  if (!arg) return;
  const out = $("#unit");
  try {
    const u = await api(`/api/v1/units/${encodeURIComponent(arg)}`);
    const regId = (u.registration || "").split("/").pop();
    out.innerHTML = `<section class="card">${kv([
      ["u.mst", esc(u.mst)], ["u.code", esc(u.unit_code || "—")], ["u.name", `<strong>${esc(u.name || "—")}</strong>`],
      ["u.state", `<span class="badge ${u.state === "active" ? "ok" : "bad"}">${esc(W["us." + u.state] ? t("us." + u.state) : u.state)}</span>`],
      ["u.email", esc(u.email || "—")], ["u.address", esc(u.address || "—")], ["u.contact", esc(u.contact || "—")],
      ["u.channel", esc(u.result_channel || "—")], ["u.updated", when(u.updated_at)],
      ["u.registration", regId ? `<a href="#/dossier/${encodeURIComponent(regId)}" class="mono">${esc(regId)}</a>` : "—"],
    ])}<p><a href="${toHash("dossiers", {mst: u.mst})}">${esc(t("d.unit_list"))}</a></p></section>`;
  } catch (err) { out.innerHTML = errorBox(err); }
};

// ---- #/verify --------------------------------------------------------------------------------
PAGES.verify = async () => {
  view().innerHTML = `<h1>${esc(t("v.title"))}</h1><p class="muted">${esc(t("v.note"))}</p>` + form("verify-form", [
    ["file", "v.file", `<input type="file" name="file" id="verify-file" accept=".xml,application/xml,text/xml">`]], "v.go") + `<div id="report"></div>`;
  $("#verify-form").onsubmit = async ev => {
    ev.preventDefault();
    const out = $("#report"), file = $("#verify-file").files[0];
    if (!file) { out.innerHTML = `<p class="error">${esc(t("v.pick"))}</p>`; return; }
    out.innerHTML = `<p class="muted">${esc(t("loading"))}</p>`;
    try {
      const report = await api("/api/v1/verify", {method: "POST", body: await file.arrayBuffer(), type: "application/xml"});
      const sigs = report.signatures || [];
      const ok = report.ok !== undefined ? report.ok : sigs.length > 0 && sigs.every(s => s.valid);
      const problems = report.problems || [];
      const verdict = ok ? "v.ok" : sigs.length ? "v.bad" : "v.none";
      out.innerHTML = `<section class="card"><h2>${esc(file.name)} <span class="badge ${ok ? "ok" : "bad"}" id="verdict">${esc(t(verdict))}</span></h2>` +
        signerTable(sigs) + (problems.length ? `<h3>${esc(t("v.problems"))}</h3>` + problemTable(problems) : "") + "</section>";
    } catch (err) { out.innerHTML = errorBox(err); }
  };
};

// ---- #/lookups/PID ---------------------------------------------------------------------------
PAGES.lookups = async ({arg}) => {
  view().innerHTML = `<h1>${esc(t("l.title"))}</h1><p class="muted">${esc(t("l.note"))}</p>` + form("lookups-form", [
    ["pid", "b.pid", `<input name="pid" inputmode="numeric" placeholder="001090123456" title="${esc(t("b.pid.hint"))}" required>`]], "u.go") + `<div id="lookups"></div>`;
  const f = $("#lookups-form");
  f.elements.pid.value = arg;
  f.onsubmit = ev => { ev.preventDefault(); go(`#/lookups/${encodeURIComponent(f.elements.pid.value.trim())}`); };
  if (!arg) return;
  const out = $("#lookups");
  try {
    const {lookups} = await api(`/api/v1/persons/${encodeURIComponent(arg)}/lookups`);
    out.innerHTML = lookups.length ? table(["l.at", "l.facility", "l.key", "l.asked", "l.outcome"], lookups.map(x =>
      `<tr><td>${when(x.at)}</td><td>${esc(x.facility || "")}</td><td class="mono">${esc(x.key_id)}</td><td>${esc(x.asked_id)}</td><td><span class="badge ${x.outcome === "valid" ? "ok" : x.outcome === "mismatch" || x.outcome === "unknown" ? "bad" : "warn"}">${word("lo.", x.outcome)}</span></td></tr>`))
      : `<p class="empty">${esc(t("l.none"))}</p>`;
  } catch (err) { out.innerHTML = errorBox(err); }
};

// ---- start -----------------------------------------------------------------------------------
function start() {
  $("#login-form").onsubmit = async ev => {
    ev.preventDefault();
    const value = $("#key").value.trim();
    if (!value) return;
    sessionStorage.setItem(KEY_STORE, value); me = null; $("#key").value = ""; $("#login-error").innerHTML = "";
    await render();
  };
  $("#logout").onclick = () => { sessionStorage.removeItem(KEY_STORE); me = null; render(); };
  const setLang = l => { lang = l; localStorage.setItem(LANG_STORE, l); render(); };
  $("#lang-vi").onclick = () => setLang("vi"); $("#lang-en").onclick = () => setLang("en");
  window.addEventListener("hashchange", render);
  render();
}
document.addEventListener("DOMContentLoaded", start);
