"""Every code the server can emit, in one catalogue (SPEC §4 `Loi/Ma`, §5 problem `code`).

One `Code` per code: its layer (`transport`, `envelope`, `signature`, `schema`, `rule` as in
a notice's `Loi/Tang`; `api` for the JSON problems of the read API), its severity and a
generic Vietnamese and English description. The message of one occurrence, with its values,
is still written where the problem is made; the description here says what the code means.
Code that emits a code uses the constant (`codes.SIG_EXPIRED`), never the literal.

The business rules' `R-` codes have their own catalogue, `interchange.rules.catalogue`, which
stays their source; its `every_code()` lists both. This module imports nothing of interchange
but `interchange.errors`, so that every layer can use it.

A code never changes once published: notices, stored dossiers and integrators carry it.
"""

from __future__ import annotations

from dataclasses import dataclass

from interchange.errors import Layer, Severity

API = "api"  # the JSON problems of the read API: never in a notice
LAYERS = (*(str(layer) for layer in Layer), API)  # transport, envelope, signature, schema, rule, api


@dataclass(frozen=True)
class Code:
    code: str
    layer: str  # one of LAYERS
    severity: str  # error | warning
    vi: str  # what the code means, in Vietnamese
    en: str  # and in English

    def as_dict(self) -> dict:
        return {"code": self.code, "layer": self.layer, "severity": self.severity, "text_vi": self.vi, "text_en": self.en}


CATALOGUE: dict[str, Code] = {}


def _code(code: str, layer: Layer | str, vi: str, en: str, severity: Severity = Severity.ERROR) -> str:
    assert code not in CATALOGUE, code
    CATALOGUE[code] = Code(code, str(layer), str(severity), vi, en)
    return code


T, E, S, X, R = Layer.TRANSPORT, Layer.ENVELOPE, Layer.SIGNATURE, Layer.SCHEMA, Layer.RULE

# ---- transport: the HTTP request, before the dossier is read (a TU_CHOI, nothing stored) ------
AUTH_MISSING = _code("AUTH-MISSING", T, "Thiếu khóa API (Authorization: Bearer ...).",
                     "An API key is required (Authorization: Bearer ...).")
AUTH_INVALID = _code("AUTH-INVALID", T, "Khóa API không đúng hoặc đã bị thu hồi.",
                     "The API key is not known to the server, or it was revoked.")
AUTH_ROLE = _code("AUTH-ROLE", T, "Vai trò của khóa API không được thực hiện thao tác này.",
                  "The API key's role may not do this.")
RATE_LIMIT = _code("RATE-LIMIT", T, "Gửi quá nhiều yêu cầu; hãy thử lại sau.",
                   "Too many requests for this API key; retry later.")
CONTENT_TYPE = _code("CONTENT-TYPE", T, "Hồ sơ phải gửi với Content-Type application/xml.",
                     "The dossier must be sent as application/xml.")
BODY_TOO_LARGE = _code("BODY-TOO-LARGE", T, "Hồ sơ vượt quá kích thước cho phép.",
                       "The dossier is larger than the configured limit.")
BODY_EMPTY = _code("BODY-EMPTY", T, "Hồ sơ rỗng.", "The request body is empty.")
IDEMPOTENCY_KEY = _code("IDEMPOTENCY-KEY", T, "Idempotency-Key không hợp lệ.",
                        "Idempotency-Key must be 1-200 printable ASCII characters.")
IDEMPOTENCY_CONFLICT = _code("IDEMPOTENCY-CONFLICT", T, "Idempotency-Key này đã dùng cho một hồ sơ khác.",
                             "This Idempotency-Key was used for different bytes.")
CONTENT_ENCODING = _code("CONTENT-ENCODING", T, "Kiểu nén (Content-Encoding) không được hỗ trợ; chỉ nhận gzip hoặc deflate.",
                         "The body's Content-Encoding is not supported (gzip and deflate are).")
BODY_UNREADABLE = _code("BODY-UNREADABLE", T, "Không đọc được nội dung yêu cầu (nén sai hoặc cắt khúc sai).",
                        "The request body could not be read: it does not decode with its Content-Encoding, or its framing is broken.")
WORKER_BUDGET = _code("WORKER-BUDGET", T, "Hồ sơ cần quá nhiều thời gian xử lý; chưa lưu gì, hãy thử lại sau.",
                      "Checking the dossier took longer than the server's budget; nothing was stored, retry later.")
WORKER_LOST = _code("WORKER-LOST", T, "Tiến trình xử lý hồ sơ bị dừng; chưa lưu gì, hãy thử lại sau.",
                    "The process checking the dossier ended; nothing was stored, retry later.")
STORE_UNAVAILABLE = _code("STORE-UNAVAILABLE", T, "Cơ sở dữ liệu tạm thời không dùng được; hồ sơ chưa được lưu, hãy gửi lại sau.",
                          "The database cannot be used now; nothing was stored: send again later (see Retry-After).")

# ---- envelope: parsing, the Hoso envelope, who may send it ------------------------------------
XML_DTD = _code("XML-DTD", E, "Tệp XML không được chứa khai báo DTD hoặc thực thể (DOCTYPE/ENTITY).",
                "XML must not contain a DTD or entity declarations (DOCTYPE/ENTITY).")
XML_TOO_MANY_ELEMENTS = _code("XML-TOO-MANY-ELEMENTS", E, "Tệp XML có quá nhiều phần tử.",
                              "The XML has more elements than the limit.")
XML_TOO_DEEP = _code("XML-TOO-DEEP", E, "Tệp XML lồng quá nhiều cấp.", "The XML nests deeper than the limit.")
XML_MALFORMED = _code("XML-MALFORMED", E, "Tệp XML không đúng cú pháp.", "The XML is malformed.")
XML_ENCODING = _code("XML-ENCODING", E, "Bảng mã của tệp XML không được chấp nhận; hãy dùng UTF-8.",
                     "The XML's declared encoding is not accepted: use UTF-8 (UTF-16, ISO-8859-n and windows-125n are read too).")
ENV_ROOT = _code("ENV-ROOT", E, "Phần tử gốc của hồ sơ phải là Hoso.", "The dossier's root element must be Hoso.")
ENV_XSD = _code("ENV-XSD", E, "Hồ sơ (Hoso) không đúng lược đồ XSD.", "The Hoso envelope does not match its XSD.")
ENV_MST_MISSING = _code("ENV-MST-MISSING", E, "Thiếu mã số thuế đơn vị (ThongTinDonVi/MaSoThue).",
                        "The unit's tax code (ThongTinDonVi/MaSoThue) is missing.")
ENV_FILE_COUNT = _code("ENV-FILE-COUNT", E, "SoLuongFile khác số tệp trong hồ sơ.",
                       "SoLuongFile differs from the number of files in the dossier.")
ENV_TOO_MANY_FILES = _code("ENV-TOO-MANY-FILES", E, "Hồ sơ có quá nhiều tệp.", "The dossier holds more files than the limit.")
ENV_FILE_LENGTH = _code("ENV-FILE-LENGTH", E, "DoDaiFile khác độ dài nội dung tệp.",
                        "DoDaiFile differs from the length of the file's content.")
ENV_FILE_BASE64 = _code("ENV-FILE-BASE64", E, "Nội dung tệp (NoiDungFile) không phải base64 hợp lệ.",
                        "NoiDungFile is not valid base64.")
ENV_FILE_EMPTY = _code("ENV-FILE-EMPTY", E, "Tệp trong hồ sơ rỗng.", "An embedded file is empty.")
ENV_FILE_DUPLICATE = _code("ENV-FILE-DUPLICATE", E, "Một tệp có hai lần trong hồ sơ (cùng tên hoặc cùng nội dung).",
                           "A file is in the dossier twice (same name or same content).")
ENV_FORM_NAME = _code("ENV-FORM-NAME", E, "Tên tệp (TenFile) chỉ một tờ khai khác với phần tử gốc của tệp; xét theo phần tử gốc.",
                      "The file's name (TenFile) names another form than its root element; the root element decides.",
                      Severity.WARNING)
ENV_FILE_TYPE = _code("ENV-FILE-TYPE", E, "Tờ khai phải là tệp XML có chữ ký số.", "A form must be a signed XML file.")
AUTH_UNIT_MISMATCH = _code("AUTH-UNIT-MISMATCH", E, "Khóa API thuộc đơn vị khác với đơn vị của hồ sơ.",
                           "The API key belongs to another unit than the dossier's.")
AUTH_IVAN_MISMATCH = _code("AUTH-IVAN-MISMATCH", E, "Khóa API thuộc I-VAN khác với MaIVAN của hồ sơ.",
                           "The API key belongs to another I-VAN than the dossier's MaIVAN.")
XML_TOO_MANY_ATTRIBUTES = _code("XML-TOO-MANY-ATTRIBUTES", E, "Một phần tử XML có quá nhiều thuộc tính.",
                                "An XML element has more attributes than the limit.")
XML_TOO_MANY_NAMESPACES = _code("XML-TOO-MANY-NAMESPACES", E, "Một phần tử XML khai báo quá nhiều không gian tên.",
                                "An XML element declares more namespaces than the limit.")
XML_NAME_TOO_LONG = _code("XML-NAME-TOO-LONG", E, "Tên phần tử hoặc thuộc tính XML quá dài.",
                          "An XML element or attribute name is longer than the limit.")
XML_ATTRIBUTE_TOO_LONG = _code("XML-ATTRIBUTE-TOO-LONG", E, "Giá trị thuộc tính XML quá dài.",
                               "An XML attribute value is longer than the limit.")
XML_TEXT_TOO_LONG = _code("XML-TEXT-TOO-LONG", E, "Một đoạn văn bản XML quá dài.",
                          "An XML text node is longer than the limit.")

# ---- signature: XML-DSig, the signer's certificate and its path (SPEC §3) ---------------------
SIG_MISSING = _code("SIG-MISSING", S, "Tài liệu chưa được ký số.", "The document is not signed.")
SIG_MULTIPLE = _code("SIG-MULTIPLE", S, "Tài liệu có nhiều hơn một chữ ký.", "The document holds more than one signature.")
SIG_LOCATION = _code("SIG-LOCATION", S, "Chữ ký không nằm ở vị trí quy định.", "The signature is not where it must be.")
SIG_CERT = _code("SIG-CERT", S, "Chứng thư ký không đọc được hoặc không hợp lệ.",
                 "The signing certificate is unreadable or not valid.")
SIG_CERT_MISSING = _code("SIG-CERT-MISSING", S, "Chữ ký không kèm chứng thư số (X509Certificate).",
                         "The signature carries no X509Certificate.")
SIG_UNTRUSTED = _code("SIG-UNTRUSTED", S, "Chứng thư ký không được cấp bởi tổ chức chứng thực tin cậy.",
                      "The certificate does not chain to a trusted anchor.")
SIG_CHAIN_INVALID = _code("SIG-CHAIN-INVALID", S, "Chuỗi chứng thư không hợp lệ.", "The certificate chain is not valid.")
SIG_CA_LEAF = _code("SIG-CA-LEAF", S, "Chứng thư ký là chứng thư của tổ chức cấp (CA=true).",
                    "The signing certificate is a CA certificate (CA=true).")
SIG_KEY_USAGE = _code("SIG-KEY-USAGE", S, "Mục đích sử dụng của chứng thư không cho phép ký hồ sơ.",
                      "The certificate's key usage does not allow signing documents.")
SIG_WEAK_KEY = _code("SIG-WEAK-KEY", S, "Loại khóa hoặc độ dài khóa của người ký không được chấp nhận.",
                     "The signer's key type or size is not allowed.")
SIG_NOT_YET_VALID = _code("SIG-NOT-YET-VALID", S, "Chứng thư chưa có hiệu lực tại thời điểm nhận.",
                          "A certificate is not yet valid at receipt.")
SIG_EXPIRED = _code("SIG-EXPIRED", S, "Chứng thư đã hết hạn tại thời điểm nhận.", "A certificate had expired at receipt.")
SIG_REVOKED = _code("SIG-REVOKED", S, "Chứng thư đã bị thu hồi.", "A certificate is revoked.")
SIG_REVOCATION_UNKNOWN = _code("SIG-REVOCATION-UNKNOWN", S,
                               "Không xác định được tình trạng thu hồi của chứng thư (không có CRL hoặc OCSP còn hiệu lực).",
                               "The revocation status could not be established (no current CRL or OCSP response).")
SIG_SIGNING_TIME = _code("SIG-SIGNING-TIME", S, "Thời điểm ký khai báo nằm ngoài thời hạn của chứng thư.",
                         "The claimed (unsigned) signing time is outside the certificate's validity.",
                         Severity.WARNING)
SIG_MST_MISMATCH = _code("SIG-MST-MISMATCH", S, "Mã số thuế của người ký khác mã số thuế đơn vị.",
                         "The signer's tax code differs from the unit's MaSoThue.")
SIG_DIGEST = _code("SIG-DIGEST", S, "Nội dung đã bị thay đổi sau khi ký (sai giá trị băm).",
                   "The content was changed after signing (digest mismatch).")
SIG_ALGORITHM = _code("SIG-ALGORITHM", S, "Thuật toán ký hoặc băm không được chấp nhận.",
                      "The signature or digest algorithm is not allowed.")
SIG_INVALID = _code("SIG-INVALID", S, "Chữ ký số không hợp lệ.", "The signature value is not valid.")
SIG_KEYVALUE = _code("SIG-KEYVALUE", S, "Khóa công khai trong KeyValue không khớp với chứng thư.",
                     "The KeyValue differs from the certificate's key.")
SIG_PROFILE = _code("SIG-PROFILE", S, "Chữ ký không đúng quy cách (phải ký toàn bộ tài liệu, một tham chiếu).",
                    "The signature does not follow the profile (one reference covering the whole document).")
SIG_BASE64 = _code("SIG-BASE64", S, "Nội dung base64 của chữ ký không hợp lệ (chỉ được có ký tự base64 và khoảng trắng XML).",
                   "Base64 content of the signature is malformed (only base64 characters and XML white space are allowed).")

# ---- schema: the forms against their XSD -----------------------------------------------------
XSD = _code("XSD", X, "Tờ khai không đúng lược đồ XSD.", "A form does not match its XSD.")
XSD_UNKNOWN_FORM = _code("XSD-UNKNOWN-FORM", X, "Mẫu tờ khai chưa được hỗ trợ (không có lược đồ).",
                         "The form is not supported (no schema for it).")

# ---- rule: registration dossiers (SPEC §9); the R- rules are in interchange.rules.catalogue ----
REG_MST = _code("REG-MST", R, "Mã số thuế của đơn vị đăng ký không hợp lệ.", "The registering unit's tax code is not valid.")
REG_EMAIL_MISSING = _code("REG-EMAIL-MISSING", R, "Thiếu địa chỉ thư điện tử (Email).",
                          "The e-mail address (Email) is missing.")
REG_EMAIL_INVALID = _code("REG-EMAIL-INVALID", R, "Địa chỉ thư điện tử không hợp lệ.", "The e-mail address is not valid.")
REG_ADDRESS_MISSING = _code("REG-ADDRESS-MISSING", R, "Thiếu địa chỉ liên hệ (DiaChi).",
                            "The contact address (DiaChi) is missing.")
REG_CONTACT_MISSING = _code("REG-CONTACT-MISSING", R, "Thiếu người liên hệ (NguoiLienHe).",
                            "The contact person (NguoiLienHe) is missing.")
REG_ALREADY_ACTIVE = _code("REG-ALREADY-ACTIVE", R, "Đơn vị đã đăng ký giao dịch điện tử.",
                           "The unit is registered for electronic transactions already.")
REG_NOT_ACTIVE = _code("REG-NOT-ACTIVE", R, "Đơn vị chưa đăng ký hoặc đã ngừng giao dịch điện tử.",
                       "The unit is not registered for electronic transactions, or has stopped.")

# ---- api: JSON problems of the read API (application/problem+json, never in a notice) ---------
NOT_FOUND = _code("NOT-FOUND", API, "Không tìm thấy (hoặc người gọi không được xem).",
                  "Not found (or not the caller's to see).")
BAD_QUERY = _code("BAD-QUERY", API, "Tham số truy vấn không hợp lệ.", "A query parameter is not valid.")
BAD_JSON = _code("BAD-JSON", API, "Nội dung yêu cầu không phải JSON đúng dạng.",
                 "The request body is not JSON of the expected shape.")
BAD_PID = _code("BAD-PID", API, "Không phải số định danh cá nhân (12 chữ số) hay mã số BHXH (10 chữ số).",
                "Neither a personal ID (12 digits) nor a social-insurance code (10 digits).")
CALLBACK_URL = _code("CALLBACK-URL", API, "Địa chỉ callback không được chấp nhận.", "The callback URL is refused.")
NOT_FORWARDED = _code("NOT-FORWARDED", API, "Hồ sơ không được chuyển tiếp lên cơ quan BHXH.",
                      "The dossier is not forwarded upstream.")
UPSTREAM_NOTICE = _code("UPSTREAM-NOTICE", API, "Thông báo do cơ quan BHXH gửi đến không được chấp nhận.",
                        "The notice pushed by the agency is not accepted (signature, binding or size).")
METHOD_NOT_ALLOWED = _code("METHOD-NOT-ALLOWED", API, "Đường dẫn này không nhận phương thức HTTP này.",
                           "This path does not take this HTTP method (see the Allow header).")
BAD_REQUEST = _code("BAD-REQUEST", API, "Yêu cầu HTTP không hợp lệ.", "The HTTP request is not valid.")
INTERNAL = _code("INTERNAL", API, "Lỗi máy chủ ngoài dự kiến; lỗi đã được ghi lại.",
                 "Unexpected server error; it has been logged.")
NOTICE_KEY_UNAVAILABLE = _code("NOTICE-KEY-UNAVAILABLE", API,
                               "Khóa ký thông báo của máy chủ không dùng được (chứng thư hết hạn hoặc chưa có hiệu lực).",
                               "The server's notice key cannot be used (its certificate has expired or is not yet valid).")

del T, E, S, X, R
