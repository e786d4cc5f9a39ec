"""The children of a form's row, in the order real files have them (SPEC §2). The XSDs in xsd/
define the same order; the rule layer reads D02-TS rows by position in it, the samples write it."""

D02_FIELDS = (
    "STT", "HoTen", "MasoBHXH", "ChucVu", "NoiLamViec", "TienLuong", "PhuCapCV", "PhuCapTNVK",
    "PhuCapTNNghe", "PhuCapLuong", "PhuCapBosung", "TuThang", "DenThang", "Ghichu", "PA",
    "TyleDong", "TinhLai", "DaCoSo", "MucHuong", "MaPhongBan", "MavungSS", "MavungLTT", "ID",
    "Loai", "CoGiamChet", "NgayChet", "NgaySinh", "GioiTinh", "CMND",
    "Vtvl_nql_tungay", "Vtvl_nql_denngay", "Vtvl_cmktbc_tungay", "Vtvl_cmktbc_denngay",
    "Vtvl_cmktbt_tungay", "Vtvl_cmktbt_denngay", "Vtvl_khac_tungay", "Vtvl_khac_denngay",
    "Nndh_tungay", "Nndh_denngay", "Hdld_tungay", "Hdld_xdth_tungay", "Hdld_xdth_denngay",
    "Hdld_khac_tungay", "Hdld_khac_denngay",
)  # fmt: skip

TK1_FIELDS = (
    "STT", "HoTen", "NgaySinh", "GioiTinh", "QuocTich", "DanToc", "Matinh_KS", "Mahuyen_KS",
    "Maxa_KS", "Diachi_NN", "Matinh_NN", "Mahuyen_NN", "Maxa_NN", "Ten_ChaMe_Giamho", "MasoBHXH",
    "Dienthoai_LH", "CMND", "Maho_Giadinh", "Mucdong", "Phuongthuc", "MaTinhBenhVien",
    "MaBenhVien", "Noidung_Thaydoi", "HosoKemtheo", "CCNS", "ID", "Diachi_KS", "Email_LH",
)  # fmt: skip

