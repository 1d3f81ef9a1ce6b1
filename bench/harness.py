"""A complete local returnsync for one run: stand-in, ingest, workers, beat, own database and Redis db.

``System`` is a context manager used by the chaos run, the pipeline benchmarks and the system
tests. Every process it starts gets its settings through environment variables only (the code
reads them in ``config/settings.py``), listens on 127.0.0.1, runs in its own process group (so a
kill -9 takes its children with it, like a crashed container) and is stopped on exit, even when
the body raised. The run's database is dropped on exit; its Redis database is flushed.

Every wait in here is bounded: a component that does not come up raises ``HarnessError`` with the
tail of its log instead of hanging the caller.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import psycopg2
import psycopg2.extras
import redis
import requests

from config.settings import dispatch_share
from standin.admin import StandinAdmin
from web.signatures import sign

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
PYTHON = str(VENV_BIN / "python") if (VENV_BIN / "python").exists() else sys.executable
HOST = "127.0.0.1"  # every process of a run talks over loopback only
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"

# A bench-only Standard Webhooks secret and status token: the run's processes get them through
# INGEST_SECRETS / STATUS_API_TOKEN, so nothing depends on the local development defaults.
BENCH_SECRET = "whsec_YmVuY2gtcmV0dXJuc3luYy1zZWNyZXQta2V5LTAx"
BENCH_STATUS_TOKEN = "bench-status-token"


class HarnessError(RuntimeError):
    """A component of the system could not be started or reached in time."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def wait_until(
    predicate: Callable[[], Any], timeout_s: float, interval_s: float = 0.2, what: str = "condition"
) -> Any:
    """Call ``predicate`` until it returns something truthy, at most ``timeout_s`` seconds."""
    deadline = time.monotonic() + timeout_s
    last_error: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as error:  # noqa: BLE001 - a component still starting raises anything
            last_error = error
        if time.monotonic() >= deadline:
            raise HarnessError(
                f"timed out after {timeout_s:.0f}s waiting for {what}"
                + (f" (last error: {last_error!r})" if last_error else "")
            )
        time.sleep(interval_s)


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_stats() -> Iterator[tuple[int, int, float, str]]:
    """(pid, process group, CPU seconds, command line) of every process we can read in /proc; the
    CPU seconds are user + system of the process and of its children it has waited for."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
            cmdline = Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile, or not ours to read
            continue
        fields = stat.rsplit(")", 1)[1].split()  # the name in parentheses may hold spaces
        # Fields after the name, from field 3 (state): pgrp is 5, utime..cstime are 14..17.
        ticks = sum(int(x) for x in fields[11:15])
        yield int(entry.name), int(fields[2]), ticks / _CLOCK_TICKS, cmdline.strip()


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all cores (/proc/stat)."""
    values = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return (sum(values) - idle) / _CLOCK_TICKS, sum(values) / _CLOCK_TICKS


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class _RunLock:
    """An exclusive flock on a file in the temp dir, held for the lifetime of a run: two runs on
    one machine (two engineers' `make test`) must not share a database name or a Redis db."""

    def __init__(self, key: str) -> None:
        self.path = Path(tempfile.gettempdir()) / f"returnsync-bench-{key}.lock"
        self._handle: Any = None

    def try_acquire(self) -> bool:
        handle = open(self.path, "a")  # noqa: SIM115 - kept open while the lock is held
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._handle = handle
        return True

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()  # closing releases the flock
            self._handle = None


REDIS_DBS = (12, 13, 14, 15)  # db 11 belongs to the unit tests (tests/conftest.py)


@dataclass
class Proc:
    """One started process (group) and its log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    started_at: float = field(default_factory=time.monotonic)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, sig)

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM the group, then SIGKILL whatever is left after ``timeout_s``."""
        if self.alive():
            self.signal_group(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                pass
        # The leader may be gone while pool children linger: always sweep the group.
        self.signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=5)


class StandinClient(StandinAdmin):
    """The stand-in's own admin client, plus the health route the harness waits on."""

    def health(self) -> bool:
        return bool(self._call("GET", "/_standin/health").get("ok"))


class System:
    """Stand-in + ingest (gunicorn) + N celery workers + beat, for one named run.

    >>> with System("demo", workers=2) as system:
    ...     system.add_shop("acme-nl.myshopify.com")
    ...     system.send(event)
    """

    def __init__(
        self,
        name: str,
        *,
        workers: int = 2,
        concurrency: int = 2,
        redis_db: int | None = None,
        env: dict[str, str] | None = None,
        log_dir: Path | None = None,
        start_timeout_s: float = 60.0,
        beat: bool = True,
        app_token_ttl_s: float | None = None,
        pool: str = "gevent",
        pgbouncer: bool = False,
    ) -> None:
        """``app_token_ttl_s``: shops are installed through the app's OAuth flow (``add_shop``),
        with access tokens that expire after that long; None: legacy static tokens. ``pool``:
        Celery's worker pool (gevent as the Procfile runs it; prefork for comparison). ``pgbouncer``:
        every process reaches Postgres through a PgBouncer in transaction pooling (the relay's
        LISTEN session excepted), as machines sharing one Postgres would."""
        safe = re.sub(r"[^a-z0-9_]", "_", name.lower())
        self.name = safe
        self.database = f"returnsync_bench_{safe}"
        self.database_url = f"postgresql://postgres@127.0.0.1:5432/{self.database}"
        self._wanted_redis_db = redis_db
        self.redis_db = -1  # chosen in start(): the first of REDIS_DBS no other run holds
        self._locks: list[_RunLock] = []
        self.standin_port = free_port()
        self.ingest_port = free_port()
        self.n_workers = workers
        self.concurrency = concurrency
        self.pool = pool
        self.with_pgbouncer = pgbouncer
        self.bouncer_port: int | None = None
        self.with_beat = beat
        self.start_timeout_s = start_timeout_s
        self.log_dir = log_dir or Path(tempfile.mkdtemp(prefix=f"returnsync-{safe}-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.env_overrides = dict(env or {})
        self.standin: StandinClient = StandinClient(f"http://{HOST}:{self.standin_port}")
        self.procs: dict[str, Proc] = {}
        self.workers: list[Proc] = []
        self._worker_seq = 0
        self._local = threading.local()
        self._rng = random.Random(f"{safe}-workers")
        self.shops: dict[str, str] = {}  # domain -> access token (static ones)
        self.app_token_ttl_s = app_token_ttl_s
        self.client_id = f"returnsync-{safe}"
        self.client_secret = f"shpss_bench_{safe}_secret_value"

    # --- environment and processes ---

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:6379/{self.redis_db}"

    def _claim(self, timeout_s: float = 600.0) -> None:
        """Wait (bounded) until this run's name and one Redis db are free on this machine."""
        name_lock = _RunLock(f"name-{self.name}")
        wait_until(
            name_lock.try_acquire,
            timeout_s,
            interval_s=1.0,
            what=f"another run named {self.name!r} to finish",
        )
        self._locks.append(name_lock)
        candidates = [self._wanted_redis_db] if self._wanted_redis_db is not None else list(REDIS_DBS)

        def claim_db() -> bool:
            for db in candidates:
                lock = _RunLock(f"redis-{db}")
                if lock.try_acquire():
                    self._locks.append(lock)
                    self.redis_db = db
                    return True
            return False

        wait_until(claim_db, timeout_s, interval_s=1.0, what="a free Redis db for the run")

    @property
    def ingest_url(self) -> str:
        return f"http://{HOST}:{self.ingest_port}"

    def env(self) -> dict[str, str]:
        """The environment of every process of this run (config/settings.py reads these)."""
        env = dict(os.environ)
        env.update(
            {
                "DATABASE_URL": self.database_url,
                "REDIS_URL": self.redis_url,
                "INGEST_HOST": HOST,
                "INGEST_PORT": str(self.ingest_port),
                "INGEST_SECRETS": BENCH_SECRET,
                "STATUS_API_TOKEN": BENCH_STATUS_TOKEN,
                "STANDIN_HOST": HOST,
                "STANDIN_PORT": str(self.standin_port),
                "SHOPIFY_URL_TEMPLATE": self.graphql_url_template,
                "PYTHONUNBUFFERED": "1",
                "LOG_LEVEL": "INFO",
                "RETURNSYNC_ENV": "local",
                "APP_URL": self.ingest_url,
                "SHOPIFY_CLIENT_ID": self.client_id,
                "SHOPIFY_CLIENT_SECRETS": self.client_secret,
                "SHOPIFY_ADMIN_URL_TEMPLATE": f"http://{HOST}:{self.standin_port}/shops/{{shop}}/admin",
            }
        )
        # As a deployment should: the dispatcher hands out about 80 % of the workers' slots, never
        # all of them (config/settings.py says why), counted for the fleet the run starts with (an
        # env override sets another figure, e.g. for set_workers()).
        env["DISPATCH_MAX_IN_FLIGHT"] = str(dispatch_share(self.n_workers * self.concurrency))
        if self.bouncer_port is not None:
            env["DATABASE_URL"] = f"postgresql://postgres@127.0.0.1:{self.bouncer_port}/{self.database}"
            env["DATABASE_LISTEN_URL"] = self.database_url
        env.update(self.env_overrides)
        return env

    @property
    def graphql_url_template(self) -> str:
        return f"http://{HOST}:{self.standin_port}/shops/{{shop}}/admin/api/{{version}}/graphql.json"

    def _spawn(self, name: str, argv: list[str]) -> Proc:
        log = self.log_dir / f"{name}.log"
        handle = open(log, "ab")  # noqa: SIM115 - the child owns it; closed when we close ours
        try:
            popen = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=self.env(),
                stdout=handle,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # own group: kill -9 takes children
        finally:
            handle.close()
        return Proc(name, popen, log)

    def _run(self, argv: list[str], timeout_s: float = 60.0, stdin: str | None = None) -> str:
        """Run a one-shot command of the project (migrate, register-shop) with the run's env."""
        done = subprocess.run(
            argv,
            cwd=ROOT,
            env=self.env(),
            input=stdin or "",
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        if done.returncode != 0:
            raise HarnessError(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def _expect_alive(self, proc: Proc) -> bool:
        if not proc.alive():
            raise HarnessError(f"{proc.name} exited with {proc.popen.returncode}:\n{_tail(proc.log)}")
        return True

    def start(self) -> System:
        try:
            self._claim()
            self._drop_database()
            self.flush_redis()
            self._run([PYTHON, "-m", "workers.store.migrate"])
            if self.with_pgbouncer:
                self._start_pgbouncer()
            self._start_standin()
            if self.app_token_ttl_s is not None:
                self.standin.register_app(
                    self.client_id,
                    [self.client_secret],
                    token_ttl_s=self.app_token_ttl_s,
                    webhooks_uri=f"{self.ingest_url}/shopify/webhooks",
                    compliance_uri=f"{self.ingest_url}/shopify/webhooks",
                )
            self._start_ingest()
            self.procs["relay"] = self._spawn("relay", [PYTHON, "-m", "workers.relay"])
            for _ in range(self.n_workers):
                self.start_worker(self.concurrency, wait=False)
            if self.with_beat:
                schedule = self.log_dir / "celerybeat-schedule"
                self.procs["beat"] = self._spawn(
                    "beat",
                    [str(VENV_BIN / "celery"), "-A", "tasks.app", "beat", "-l", "info", "-s", str(schedule)],
                )
            for worker in list(self.workers):
                self._wait_worker_ready(worker)
        except BaseException:
            self.close()
            raise
        return self

    def _start_pgbouncer(self) -> None:
        """Debian's pgbouncer in transaction pooling, in front of the local Postgres."""
        binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
        if not Path(binary).exists():
            raise HarnessError("pgbouncer is not installed (apt-get install pgbouncer)")
        port = free_port()
        home = self.log_dir / "pgbouncer"
        home.mkdir(exist_ok=True)
        os.chmod(self.log_dir, 0o755)  # the postgres user reads its config below it
        (home / "userlist.txt").write_text('"postgres" ""\n')
        (home / "pgbouncer.ini").write_text(
            textwrap.dedent(f"""\
            [databases]
            * = host=127.0.0.1 port=5432
            [pgbouncer]
            listen_addr = 127.0.0.1
            listen_port = {port}
            unix_socket_dir =
            auth_type = trust
            auth_file = {home / "userlist.txt"}
            pool_mode = transaction
            max_client_conn = 2000
            default_pool_size = 20
            max_db_connections = 40
            server_reset_query =
            ignore_startup_parameters = extra_float_digits,options
            admin_users = postgres
            logfile = {home / "pgbouncer.log"}
            """)
        )
        argv = [binary, str(home / "pgbouncer.ini")]
        if os.geteuid() == 0:  # pgbouncer will not run as root: it drops to the postgres user
            shutil.chown(home, "postgres")
            for child in home.iterdir():
                shutil.chown(child, "postgres")
            argv[1:1] = ["-u", "postgres"]
        proc = self.procs["pgbouncer"] = self._spawn("pgbouncer", argv)

        def accepting() -> bool:
            self._expect_alive(proc)
            try:
                psycopg2.connect(
                    f"postgresql://postgres@127.0.0.1:{port}/{self.database}", connect_timeout=2
                ).close()
            except psycopg2.OperationalError:
                return False
            return True

        wait_until(accepting, self.start_timeout_s, what="pgbouncer")
        self.bouncer_port = port

    def bouncer_transactions(self) -> int:
        """Transactions PgBouncer has run for this run's database (its SHOW STATS)."""
        if self.bouncer_port is None:
            return 0
        conn = psycopg2.connect(f"postgresql://postgres@127.0.0.1:{self.bouncer_port}/pgbouncer")
        conn.autocommit = True
        try:
            with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
                cur.execute("SHOW STATS")
                return sum(
                    int(row["total_xact_count"]) for row in cur.fetchall() if row["database"] == self.database
                )
        finally:
            conn.close()

    def _start_standin(self) -> None:
        if (ROOT / "standin" / "__main__.py").exists():
            argv = [PYTHON, "-m", "standin", "--port", str(self.standin_port)]
        else:  # the stand-in's CLI has not landed: serve its HTTP server directly
            argv = [
                PYTHON,
                "-c",
                "import sys; from standin.server import make_server; "
                f"make_server({self.standin_port}, '{HOST}').serve_forever()",
            ]
        proc = self.procs["standin"] = self._spawn("standin", argv)
        wait_until(
            lambda: self._expect_alive(proc) and self.standin.health(),
            self.start_timeout_s,
            what="the Shopify stand-in",
        )

    def _start_ingest(self) -> None:
        proc = self.procs["ingest"] = self._spawn(
            "ingest", [str(VENV_BIN / "gunicorn"), "-c", "web/gunicorn_conf.py", "web.wsgi:application"]
        )

        def ready() -> bool:
            self._expect_alive(proc)
            return requests.get(f"{self.ingest_url}/readyz", timeout=2).status_code == 200

        wait_until(ready, self.start_timeout_s, what="the ingest /readyz")

    def start_worker(self, concurrency: int | None = None, wait: bool = True) -> int:
        """Start one more celery worker process (its own process group); returns its pid."""
        self._worker_seq += 1
        name = f"worker{self._worker_seq}"
        proc = self._spawn(
            name,
            [
                str(VENV_BIN / "celery"),
                "-A",
                "tasks.app",
                "worker",
                "-Q",
                "returns",
                "-P",
                self.pool,
                "--concurrency",
                str(concurrency or self.concurrency),
                "-l",
                "info",
                # A unique node name per process, so a replacement never collides with the dead one.
                "-n",
                f"{name}.{self.name}@%h",
                "--without-mingle",
                "--without-gossip",
            ],
        )
        self.workers.append(proc)
        if wait:
            self._wait_worker_ready(proc)
        return proc.pid

    def _wait_worker_ready(self, proc: Proc) -> None:
        def ready() -> bool:
            self._expect_alive(proc)
            return " ready." in proc.log.read_text(errors="replace")

        wait_until(ready, self.start_timeout_s, interval_s=0.25, what=f"{proc.name} to be ready")

    def worker_pids(self) -> list[int]:
        return [w.pid for w in self.workers if w.alive()]

    def kill_random_worker(self) -> int:
        """kill -9 one worker process group (a prefork pool's children die with it)."""
        alive = [w for w in self.workers if w.alive()]
        if not alive:
            raise HarnessError("no worker is alive")
        victim = self._rng.choice(alive)
        victim.signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            victim.popen.wait(timeout=10)
        self.workers.remove(victim)
        return victim.pid

    def stop_workers(self) -> None:
        """Stop every worker gracefully (warm shutdown lets running tasks finish, bounded)."""
        for worker in self.workers:
            worker.stop(timeout_s=30)
        self.workers.clear()

    def set_workers(self, count: int, concurrency: int) -> None:
        self.stop_workers()
        for _ in range(count):
            self.start_worker(concurrency, wait=False)
        for worker in self.workers:
            self._wait_worker_ready(worker)

    # --- shops ---

    def add_shop(
        self,
        domain: str,
        token: str | None = None,
        *,
        bucket_size: int = 2000,
        restore_rate: int = 100,
        scopes: list[str] | None = None,
        language: str = "en",
    ) -> str:
        """Create the shop on the stand-in and give returnsync access to it: installed through the
        app's OAuth flow in app mode, else a registered static token; returns the static token."""
        if self.app_token_ttl_s is not None:
            self.standin.create_shop(domain, None, bucket_size=bucket_size, restore_rate=restore_rate)
            self.install(domain)
            return ""
        token = token or f"shpat_bench_{re.sub(r'[^a-z0-9]', '', domain)[:24]}"
        self.standin.create_shop(
            domain, token, scopes=scopes, bucket_size=bucket_size, restore_rate=restore_rate
        )
        self._run(
            [
                PYTHON,
                "-m",
                "workers.cli",
                "register-shop",
                domain,
                "--api-url",
                self.graphql_url_template,
                "--language",
                language,
            ],
            stdin=token,
        )
        self.shops[domain] = token
        return token

    def add_shops(
        self,
        domains: list[str],
        *,
        bucket_size: int = 2000,
        restore_rate: int = 100,
        orders: dict[str, list[dict[str, Any]]] | None = None,
        language: str = "en",
        timeout_s: float = 300.0,
    ) -> dict[str, str]:
        """Many shops at once, as ``add_shop`` with static tokens does one (which runs the CLI once
        per shop): one stand-in seed request creates the shops with ``orders[domain]`` (the
        stand-in's seed format: ``{"name", "id", "line_items", "fulfilled"?}``), one process runs
        the CLI's ``register-shop`` for all of them (the tokens on its stdin). Returns the tokens."""
        if self.app_token_ttl_s is not None:
            raise HarnessError("add_shops registers static tokens; in app mode use add_shop")
        tokens = {d: f"shpat_bench_{re.sub(r'[^a-z0-9]', '', d)[:24]}" for d in domains}
        self.standin.load_seed(
            {
                "shops": [
                    {
                        "domain": d,
                        "token": tokens[d],
                        "bucket_size": bucket_size,
                        "restore_rate": restore_rate,
                        "orders": (orders or {}).get(d, []),
                    }
                    for d in domains
                ]
            }
        )
        script = (
            "import sys\n"
            "from workers import cli\n"
            "url, language = sys.argv[1], sys.argv[2]\n"
            "for domain in sys.argv[3:]:\n"
            "    code = cli.main(['register-shop', domain, '--api-url', url, '--language', language])\n"
            "    if code: sys.exit(code)\n"
        )
        self._run(
            [PYTHON, "-c", script, self.graphql_url_template, language, *domains],
            timeout_s=timeout_s,
            stdin="".join(tokens[d] + "\n" for d in domains),
        )
        self.shops.update(tokens)
        return tokens

    def install(self, domain: str) -> None:
        """(Re)install the app on a shop as a merchant's browser does: install link, Shopify's
        grant screen (the stand-in approves at once), our callback."""
        page = requests.get(f"{self.ingest_url}/shopify/install", params={"shop": domain}, timeout=60)
        if page.status_code != 200 or "is installed on" not in page.text:
            raise HarnessError(f"install of {domain} failed: HTTP {page.status_code} {page.text[:300]}")

    def uninstall(self, domain: str) -> None:
        """The merchant uninstalls the app: Shopify revokes its tokens and sends app/uninstalled."""
        self.standin.uninstall(domain, self.client_id)

    # --- traffic ---

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            # The load generator shares the cores with what it measures: no scan of the proxy
            # variables and ~/.netrc for every event it sends (the system's own client skips it too).
            session.trust_env = False
        return session

    def send(self, event: dict[str, Any], *, max_attempts: int = 30, max_time_s: float = 90.0) -> int:
        """Sign and post one event, as the producer does: retry on 5xx and on no answer, with a
        bound on attempts and time. Returns the final HTTP status (0: never answered)."""
        body = json.dumps(event).encode()
        deadline = time.monotonic() + max_time_s
        status = 0
        for attempt in range(max_attempts):
            headers = {"Content-Type": "application/json", **sign(body, str(event["id"]), BENCH_SECRET)}
            try:
                response = self._session().post(
                    f"{self.ingest_url}/v1/return-events", data=body, headers=headers, timeout=10
                )
                status = response.status_code
                if status < 500:
                    return status
            except requests.RequestException:
                status = 0
                self._local.session = None  # a broken keep-alive connection: start afresh
            if time.monotonic() >= deadline:
                break
            time.sleep(min(2.0, 0.1 * 2 ** min(attempt, 5)) * (0.5 + random.random()))
        return status

    def status(self, shop: str, return_id: str) -> dict[str, Any] | None:
        """The status API's answer for one return; None when it is unknown (404)."""
        response = self._session().get(
            f"{self.ingest_url}/v1/returns/{shop}/{return_id}",
            headers={"Authorization": f"Bearer {BENCH_STATUS_TOKEN}"},
            timeout=10,
        )
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise HarnessError(f"status API {response.status_code}: {response.text[:300]}")
        return dict(response.json())

    # --- faults ---

    def flush_redis(self) -> None:
        """Empty this run's Redis database (only ours: FLUSHDB, never FLUSHALL)."""
        client = redis.Redis.from_url(self.redis_url, socket_timeout=5)
        try:
            client.flushdb()
        finally:
            client.close()

    @staticmethod
    def restart_postgres(timeout_s: float = 90.0) -> float:
        """Restart the local Postgres cluster; returns the seconds it was unavailable (bounded)."""
        start = time.monotonic()
        version = sorted(os.listdir("/etc/postgresql"))[-1]
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
            check=True,
            timeout=timeout_s,
            capture_output=True,
        )
        wait_until(
            lambda: subprocess.run(
                ["pg_isready", "-q", "-h", HOST, "-p", "5432"], timeout=5, check=False
            ).returncode
            == 0,
            timeout_s,
            what="Postgres after restart",
        )
        return time.monotonic() - start

    # --- inspection ---

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        """Read this run's database (benchmarks read event timestamps; never writes)."""
        conn = psycopg2.connect(self.database_url, connect_timeout=5)
        try:
            with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
                cur.execute(sql, params)
                return [dict(row) for row in cur.fetchall()]
        finally:
            conn.close()

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds (user + system) used so far by each process group this run started, by name
        (worker1, relay, ingest, beat, standin, ...): the leader and every process of its group,
        so gunicorn's and a prefork pool's children count, with children that ended and were
        waited for. Processes that ended themselves are not counted (read before and after)."""
        groups = {p.pid: p.name for p in [*self.procs.values(), *self.workers] if p.alive()}
        out = dict.fromkeys(groups.values(), 0.0)
        for _pid, group, seconds, _cmd in _proc_stats():
            if group in groups:
                out[groups[group]] += seconds
        return out

    def postgres_cpu_seconds(self) -> float:
        """CPU seconds so far of the Postgres backends connected to this run's database (backends
        that have closed meanwhile are not counted: the processes keep pooled connections)."""
        marker = f" {self.database} "
        return sum(s for _p, _g, s, cmd in _proc_stats() if cmd.startswith("postgres:") and marker in cmd)

    def log_tails(self, lines: int = 30) -> str:
        procs = list(self.procs.values()) + list(self.workers)
        return "\n".join(f"--- {p.name} ({p.log}) ---\n{_tail(p.log, lines)}" for p in procs)

    # --- teardown ---

    def _drop_database(self) -> None:
        conn = psycopg2.connect(PG_ADMIN_URL, connect_timeout=5)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
        finally:
            conn.close()

    def close(self) -> None:
        """Stop every process, then drop the database and flush Redis; never raises."""
        for proc in [*self.workers, *self.procs.values()]:
            with contextlib.suppress(Exception):
                # The stand-in keeps nothing worth a graceful stop; the others get 10 s.
                proc.stop(timeout_s=1 if proc.name == "standin" else 10)
        self.workers.clear()
        self.procs.clear()
        if self._locks:  # nothing to clean when start() never got the run's name
            for step in (self._drop_database, self.flush_redis):
                # Postgres may be mid-restart after a chaos run: retry briefly, then give up.
                for _ in range(10):
                    try:
                        step()
                        break
                    except Exception:  # noqa: BLE001
                        time.sleep(1)
        for lock in self._locks:
            lock.release()
        self._locks.clear()

    def remove_logs(self) -> None:
        shutil.rmtree(self.log_dir, ignore_errors=True)

    def __enter__(self) -> System:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is not None:
            sys.stderr.write(f"returnsync {self.name} failed; logs in {self.log_dir}\n{self.log_tails()}\n")
        self.close()


@contextlib.contextmanager
def running(name: str, **kwargs: Any) -> Iterator[System]:
    """``with running("e2e", workers=1) as system:`` — the same as ``with System(...)``."""
    with System(name, **kwargs) as system:
        yield system
