"""What the benchmarks share: a cached PKI and signed dossiers under bench/out/, a config in a
temp folder, the server in a process of its own, and memory and CPU figures read from /proc.

Not product code and not tests: nothing here asserts on a timing.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import secrets
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from sqlalchemy.engine import make_url

from interchange.devkit import pki, samples
from interchange.trust.dossier_signing import sign_envelope
from interchange.trust.xmldsig import DocumentSigner

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
OUT = BENCH_DIR / "out"
PKI_DIR = OUT / "pki"
UNIT = samples.Unit()
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


# ---- PKI and signed dossiers ---------------------------------------------------------------


@dataclass(frozen=True)
class BenchPki:
    anchors_dir: Path
    signing_key: Path
    signing_cert: Path
    unit_p12: Path
    ca_id: str  # a short fingerprint of the CA: cached dossiers are only good under this CA


def ensure_pki() -> BenchPki:
    """A development PKI of the benchmarks' own (dev CA, notice key, a certificate for UNIT's MST)."""
    made = pki.ensure_dev_pki(
        PKI_DIR / "trusted",
        PKI_DIR / "data",
        PKI_DIR / "data" / "server" / "notice-key.pem",
        PKI_DIR / "data" / "server" / "notice-cert.pem",
        demo_mst=UNIT.mst,
        demo_name=UNIT.name,
    )
    ca = pki.load_certs_pem(made["ca"])[0]
    return BenchPki(
        anchors_dir=PKI_DIR / "trusted",
        signing_key=made["signing_key"],
        signing_cert=made["signing_cert"],
        unit_p12=made["demo_p12"],
        ca_id=ca.fingerprint(hashes.SHA256()).hex()[:12],
    )


def bench_ca(bench_pki: BenchPki) -> pki.Issued:
    """The bench's development CA with its key (ensure_dev_pki keeps it under data/dev-ca)."""
    cert = pki.load_certs_pem(bench_pki.anchors_dir / "dev-ca.pem")[0]
    return pki.Issued(key=pki.load_key_pem(PKI_DIR / "data" / "dev-ca" / "ca-key.pem"), cert=cert, chain=[])


def write_crl(bench_pki: BenchPki, directory: Path, entries: int) -> int:
    """A CRL of the bench CA listing `entries` revoked serials (none of them the unit's) into
    `directory`, as an operator would put a licensed CA's CRL in `[trust] crl_dir`; its size."""
    from datetime import timedelta

    ca = bench_ca(bench_pki)
    when = datetime.now(UTC) - timedelta(days=30)
    crl = pki.issue_crl(ca, [(10**30 + n, when) for n in range(entries)])
    der = crl.public_bytes(serialization.Encoding.DER)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "bench-ca.crl").write_bytes(der)
    return len(der)


def unit_signer(p12: Path) -> DocumentSigner:
    issued = pki.load_p12(p12, b"demo")
    return DocumentSigner(issued.key, [issued.cert, *issued.chain])


def make_dossier(signer: DocumentSigner, rows: int, seed: int) -> bytes:
    """A procedure-600 Hoso with one D02-TS of `rows` rows: form signed, then envelope."""
    form = samples.d02ts(rows, seed=seed, unit=UNIT)
    stamp = "112026"
    data = samples.envelope(UNIT, [("D02-TS", f"D02-TS_{UNIT.mst}_{stamp}.xml", form)], procedure="600")
    return sign_envelope(data, signer)


_pool_signers: list[DocumentSigner] = []


def _pool_init(p12: str, others: tuple[bytes, list[bytes]] | None = None) -> None:
    """The unit's signer; with `others` (the key and certificates of `unit_certs`), one signer
    per certificate instead."""
    if others is None:
        _pool_signers[:] = [unit_signer(Path(p12))]
        return
    key = serialization.load_pem_private_key(others[0], None)
    ca = unit_signer(Path(p12)).chain[1:]
    _pool_signers[:] = [DocumentSigner(key, [x509.load_pem_x509_certificate(c), *ca]) for c in others[1]]


def _pool_make(job: tuple[int, int]) -> bytes:
    assert _pool_signers
    rows, seed = job
    return make_dossier(_pool_signers[seed % len(_pool_signers)], rows, seed)


def unit_certs(bench_pki: BenchPki, count: int) -> tuple[bytes, list[bytes]]:
    """`count` certificates of the bench CA for the unit's MST, as many employers' signing
    certificates would be to the server (each validated on its own), on one key (making keys
    would take minutes and changes nothing the server does). Cached in bench/out/pki."""
    path = PKI_DIR / "data" / f"signers-{count}.pem"
    if not path.exists():
        ca = bench_ca(bench_pki)
        first = pki.issue_unit_cert(ca, UNIT.mst, UNIT.name)
        certs = [first.cert]
        for _ in range(1, count):
            builder = (x509.CertificateBuilder().subject_name(first.cert.subject).issuer_name(ca.cert.subject)
                       .public_key(first.key.public_key()).serial_number(x509.random_serial_number())
                       .not_valid_before(first.cert.not_valid_before_utc)
                       .not_valid_after(first.cert.not_valid_after_utc))  # fmt: skip
            for ext in first.cert.extensions:
                builder = builder.add_extension(ext.value, critical=ext.critical)
            certs.append(builder.sign(ca.key, hashes.SHA256()))
        key = first.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(key + b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs))
        tmp.replace(path)
    data = path.read_bytes()
    key_end = data.index(b"-----END PRIVATE KEY-----") + len(b"-----END PRIVATE KEY-----\n")
    return data[:key_end], [c.public_bytes(serialization.Encoding.PEM) for c in x509.load_pem_x509_certificates(data[key_end:])]


def signed_dossiers(bench_pki: BenchPki, rows: int, count: int, *, signers: int = 1, log=print) -> list[bytes]:
    """`count` dossiers of seeds 0..count-1, from the cache in bench/out/ (grown as needed); with
    `signers` > 1, signed in turn by that many certificates (`unit_certs`)."""
    tag = f"-signers{signers}" if signers > 1 else ""
    path = OUT / f"small-rows{rows}{tag}-ca{bench_pki.ca_id}.bin"
    have = _read_records(path, count)
    if len(have) < count:
        todo = [(rows, seed) for seed in range(len(have), count)]
        procs = os.cpu_count() or 1
        log(
            f"signing {len(todo)} dossiers of {rows} rows on {procs} processes (cached in {path.relative_to(REPO)})"
        )
        started = time.perf_counter()
        ctx = multiprocessing.get_context("spawn")
        others = unit_certs(bench_pki, signers) if signers > 1 else None
        with ctx.Pool(procs, initializer=_pool_init, initargs=(str(bench_pki.unit_p12), others)) as pool:
            made = pool.map(_pool_make, todo, chunksize=max(1, len(todo) // (procs * 8)))
        log(f"  signed in {time.perf_counter() - started:.1f} s")
        have += made
        _write_records(path, have)
    return have[:count]


def large_dossier(bench_pki: BenchPki, rows: int, *, log=print) -> Path:
    """The path of one signed dossier of `rows` rows (seed 1), made once (in a child process:
    signing a large file takes several GB) and cached in bench/out/."""
    path = OUT / f"large-rows{rows}-ca{bench_pki.ca_id}.xml"
    if not path.exists():
        log(f"generating and signing a D02-TS of {rows} rows (once; cached in {path.relative_to(REPO)})")
        started = time.perf_counter()
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(1, initializer=_pool_init, initargs=(str(bench_pki.unit_p12),)) as pool:
            data = pool.apply(_pool_make, ((rows, 1),))
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
        log(f"  made in {time.perf_counter() - started:.1f} s")
    return path


def _read_records(path: Path, limit: int | None = None) -> list[bytes]:
    """The first `limit` records (all when None); a torn last record is ignored."""
    out: list[bytes] = []
    if not path.exists():
        return out
    with path.open("rb") as fh:
        while limit is None or len(out) < limit:
            head = fh.read(4)
            if len(head) < 4:
                break
            (n,) = struct.unpack(">I", head)
            record = fh.read(n)
            if len(record) < n:
                break
            out.append(record)
    return out


def _write_records(path: Path, records: list[bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as fh:
        for r in records:
            fh.write(struct.pack(">I", len(r)) + r)
    tmp.replace(path)


# ---- config, store, API key ----------------------------------------------------------------


def _toml(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string for these values


def write_config(tmp: Path, bench_pki: BenchPki, store_url: str) -> Path:
    path = tmp / "config.toml"
    path.write_text(
        f"data_dir = {_toml(str(tmp / 'data'))}\n"
        '[server]\nhost = "127.0.0.1"\noffice_code = "BENCH"\n'
        f"[store]\nurl = {_toml(store_url)}\n"
        f"[trust]\nanchors_dir = {_toml(str(bench_pki.anchors_dir))}\ncrl_dir = {_toml(str(tmp / 'crl'))}\n"
        f"[signing]\nkey = {_toml(str(bench_pki.signing_key))}\ncert = {_toml(str(bench_pki.signing_cert))}\n"
        '[targets]\n"600" = "5 working days"\n',
        encoding="utf-8",
    )
    return path


def sqlite_url(tmp: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp / 'data' / 'interchange.db'}"


def bench_store(url: str, tmp: Path) -> tuple[str, PgSchema | None]:
    """The store URL a run uses and, on PostgreSQL, the fresh schema to drop afterwards: a
    PostgreSQL `url` gets a schema of its own, anything else means SQLite under `tmp`."""
    if url.startswith("postgresql"):
        schema = PgSchema(url)
        schema.create()
        return schema.url, schema
    return url or sqlite_url(tmp), None


class PgSchema:
    """A fresh schema `bench_<random>` on a PostgreSQL URL, dropped by `drop()`."""

    def __init__(self, url: str):
        self.base = make_url(url)
        self.name = f"bench_{secrets.token_hex(4)}"
        self.url = self.base.update_query_dict({"search_path": self.name}).render_as_string(
            hide_password=False
        )

    async def _execute(self, statement: str) -> None:
        import asyncpg

        dsn = self.base.set(drivername="postgresql", query={}).render_as_string(hide_password=False)
        conn = await asyncpg.connect(dsn, timeout=10)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    def create(self) -> None:
        asyncio.run(self._execute(f'CREATE SCHEMA "{self.name}"'))

    def drop(self) -> None:
        asyncio.run(self._execute(f'DROP SCHEMA IF EXISTS "{self.name}" CASCADE'))


def create_submitter_key(store_url: str, mst: str = UNIT.mst) -> str:
    """Migrate the store and make a submitter API key for `mst`; returns the bearer token."""
    from interchange.store.store import Store

    async def make() -> str:
        store = await Store.open(store_url)
        try:
            _, token = await store.keys.create("submitter", mst=mst, label="bench")
            return token
        finally:
            await store.close()

    return asyncio.run(make())


def describe_store(url: str) -> str:
    u = make_url(url)
    return f"{u.get_backend_name()} {u.host or ''}{'/' + u.database if u.database else ''}".replace("  ", " ")


# ---- the server in its own process ---------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`python -m interchange --config <config> serve` on a free port, with env overrides."""

    def __init__(self, config: Path, *, workers: int, env: dict[str, str] | None = None, processes: int = 1):
        self.config = config
        self.workers = workers
        self.processes = processes  # `serve --processes N` (PostgreSQL only)
        self.port = free_port()
        self.extra_env = dict(env or {})
        self.log_path = config.parent / "server.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 90.0) -> float:
        """Start and wait for /readyz; returns the seconds it took."""
        env = dict(os.environ)
        env.update(
            INTERCHANGE_SERVER_PORT=str(self.port),
            INTERCHANGE_SERVER_WORKERS=str(self.workers),
            INTERCHANGE_SERVER_HOST="127.0.0.1",
            INTERCHANGE_LIMITS_RATE_PER_SECOND="0",  # one key sends everything: measure the server, not the limit
            PYTHONUNBUFFERED="1",
        )
        env.update(self.extra_env)
        started = time.perf_counter()
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "interchange", "--config", str(self.config), "serve", "--processes", str(self.processes)],
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        while time.perf_counter() - started < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as r:
                    listening = self.log_path.read_text(errors="replace").count("Running on")  # one per process, once its socket listens (server.serve_one)
                    if r.status == 200 and listening >= self.processes:  # every process, not the first
                        return time.perf_counter() - started
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the server was not ready after {timeout} s:\n{self.log_tail()}")

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM (aiohttp shuts down gracefully: workers, then the store), then wait."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            print(f"!! the server did not stop {timeout} s after SIGTERM; killing it", file=sys.stderr)
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


# ---- /proc -------------------------------------------------------------------------------


@dataclass
class ProcInfo:
    pid: int
    role: str  # server | worker | other
    hwm_kb: int  # VmHWM: peak resident set
    rss_kb: int  # VmRSS now
    cpu_s: float  # user + system CPU seconds so far


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                out += [int(x) for x in fh.read().split()]
    except OSError:
        pass
    return out


def process_tree(pid: int) -> list[int]:
    seen, todo = [], [pid]
    while todo:
        p = todo.pop(0)
        if p not in seen:
            seen.append(p)
            todo += _children(p)
    return seen


def proc_info(pid: int, root: int, supervised: bool = False) -> ProcInfo | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return None
    fields = {k: v.split()[0] for k, _, v in (ln.partition(":") for ln in status.splitlines()) if v.strip()}
    after = stat.rsplit(")", 1)[1].split()
    cpu = _cpu_s(after)
    if pid == root:
        role = "server"
    elif "multiprocessing" in cmdline and "resource_tracker" in cmdline:
        role = "tracker"
    elif "multiprocessing" in cmdline and int(after[1]) == root and supervised:
        role = "server"  # an HTTP process of `serve --processes N` (the supervisor is the root)
    elif "multiprocessing" in cmdline:
        role = "worker"
    else:
        role = "other"
    return ProcInfo(pid, role, int(fields.get("VmHWM", 0)), int(fields.get("VmRSS", 0)), cpu)


def server_processes(pid: int, supervised: bool = False) -> list[ProcInfo]:
    """The server's processes; `supervised`: the root is the supervisor of `serve --processes N`,
    whose HTTP processes count as the server."""
    return [i for p in process_tree(pid) if (i := proc_info(p, pid, supervised)) is not None]


def _cpu_s(after: list[str]) -> float:
    """User + system CPU seconds from /proc/<pid>/stat's fields after the command's ")", its own and
    its children's that ended (a worker's forked validation helper; a PostgreSQL backend gone)."""
    return sum(int(after[i]) for i in (11, 12, 13, 14)) / CLK_TCK  # utime, stime, cutime, cstime


def postgres_cpu_s() -> float | None:
    """User + system CPU seconds so far of this machine's PostgreSQL processes (postmaster,
    backends, WAL writer, checkpointer...; a backend that has exited counts in the postmaster's
    children's time); None when none is visible."""
    total, found = 0.0, False
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if Path(f"/proc/{entry}/comm").read_text().strip() != "postgres":
                continue
            after = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += _cpu_s(after)
        found = True
    return total if found else None


def mib(kb: float) -> str:
    return f"{kb / 1024:.1f} MiB"


def self_rss_kb() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * PAGE_KB


def self_hwm_kb() -> int:
    """VmHWM of this process. Unlike getrusage's ru_maxrss, which keeps the high-water mark of
    the parent at fork (through exec), this counts only this process image."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def read_exact(path: Path) -> bytes:
    """A file's bytes in one allocation of its size (Path.read_bytes may briefly hold several
    times that, which would show in a peak-RSS measurement)."""
    size = path.stat().st_size
    with open(path, "rb", buffering=0) as fh:
        data = fh.read(size)  # FileIO.read(n): one bytes object of n, filled in place
        while len(data) < size:  # a short read (not seen on Linux for regular files)
            more = fh.read(size - len(data))
            if not more:
                raise OSError(f"{path}: short read")
            data += more
    return data
