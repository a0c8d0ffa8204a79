"""A private PostgreSQL server for the tests: Debian's postgresql package (installed by `make
test` when missing), a throwaway cluster in a temp dir on a free port, run as the `postgres`
user when the tests run as root. BUNDLER_TEST_POSTGRES_DSN points the tests at an existing
server instead."""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass

from bundler.devchain import free_port


class PostgresUnavailable(Exception):
    pass


@dataclass
class PostgresServer:
    dsn: str
    datadir: str | None = None
    pg_ctl: list[str] | None = None

    def database(self) -> str:
        """A fresh database on this server; returns its DSN."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        base, _, _ = self.dsn.rpartition("/")
        return f"{base}/{name}"

    def stop(self) -> None:
        if self.pg_ctl is None:
            return
        subprocess.run(self.pg_ctl + ["-D", self.datadir, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(self.datadir, ignore_errors=True)


def _bindir() -> str:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return os.path.dirname(found[-1])
    initdb = shutil.which("initdb")
    if initdb:
        return os.path.dirname(initdb)
    raise PostgresUnavailable("no PostgreSQL server binaries (initdb); `apt-get install -y postgresql` provides them")


def start_postgres() -> PostgresServer:
    dsn = os.environ.get("BUNDLER_TEST_POSTGRES_DSN")
    if dsn:
        return PostgresServer(dsn)
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise PostgresUnavailable("the psycopg package is not installed") from None
    bindir = _bindir()
    runas: list[str] = []
    datadir = tempfile.mkdtemp(prefix="bundler-pg-")
    if os.geteuid() == 0:  # postgres refuses to run as root
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            raise PostgresUnavailable("running as root and there is no `postgres` user to run the server") from None
        os.chown(datadir, user.pw_uid, user.pw_gid)
        runas = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    try:
        subprocess.run(runas + [f"{bindir}/initdb", "-D", datadir, "-U", "bundler", "-A", "trust", "-E", "UTF8",
                                "--no-sync"], check=True, capture_output=True, timeout=120)
        pg_ctl = runas + [f"{bindir}/pg_ctl"]
        opts = f"-p {port} -k {datadir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100"
        subprocess.run(pg_ctl + ["-D", datadir, "-o", opts, "-l", f"{datadir}/server.log", "-w", "-t", "60",
                                 "start"], check=True, capture_output=True, timeout=90)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as e:
        detail = getattr(e, "stderr", b"") or b""
        shutil.rmtree(datadir, ignore_errors=True)
        raise PostgresUnavailable(f"could not start PostgreSQL from {bindir}: {e} {detail.decode(errors='replace')[-500:]}") from None
    return PostgresServer(f"postgresql://bundler@127.0.0.1:{port}/postgres", datadir, pg_ctl)
