"""Fixtures of the platform tests: real `modelhost up` processes, and small models to deploy.

``start_platform(*args, env=..., token=...)`` starts ``python -m modelhost up`` on a free port with
a state dir of its own and waits for ``GET /api/v1/health``. Every process the platform starts
inherits a marker variable (``MODELHOST_TEST_PLATFORM``) from it, so the teardown can find any
instance, worker or orphan it left behind, whichever way it was started, and fail the test.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

import modelhost
from modelhost.client import ClientError
from tests.conftest import free_port
from tests.models import sentiment_corpus, sklearn_text_pipeline

MARKER = "MODELHOST_TEST_PLATFORM"
STOP_TIMEOUT_S = 60.0


# -- processes -----------------------------------------------------------------------------------------
def _read_proc(pid: int, name: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/{name}").read_bytes()
    except OSError:  # gone meanwhile, a zombie, or not ours to read
        return b""


def _pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def _is_zombie(pid: int) -> bool:
    stat = _read_proc(pid, "stat")
    return b") Z " in stat or b") X " in stat


def processes_matching(predicate: Callable[[int, list[bytes], bytes], bool]) -> list[int]:
    """PIDs of live processes whose (pid, environ entries, cmdline) satisfy ``predicate``."""
    me = os.getpid()
    found = []
    for pid in _pids():
        if pid == me:
            continue
        environ = _read_proc(pid, "environ").split(b"\0")
        cmdline = _read_proc(pid, "cmdline").replace(b"\0", b" ")
        if predicate(pid, environ, cmdline) and not _is_zombie(pid):
            found.append(pid)
    return found


def parent_of(pid: int) -> int | None:
    stat = _read_proc(pid, "stat")
    fields = stat[stat.rfind(b")") + 2 :].split()
    return int(fields[1]) if len(fields) > 1 else None


def describe_pid(pid: int) -> str:
    cmdline = _read_proc(pid, "cmdline").replace(b"\0", b" ").decode(errors="replace").strip()
    return f"pid {pid}: {cmdline or '?'}"


def _listening_inodes() -> dict[int, str]:
    """Socket inode -> "host:port" of every TCP socket listening on this machine (IPv4 and IPv6)."""
    found = {}
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] != "0A":  # LISTEN
                    continue
                host_hex, port_hex = fields[1].split(":")
                raw = bytes.fromhex(host_hex)
                if width == 8:
                    host = ".".join(str(b) for b in reversed(raw))
                else:  # four little-endian 32-bit words
                    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                    host = str(ipaddress.IPv6Address(words))
                found[int(fields[9])] = f"{host}:{int(port_hex, 16)}"
    return found


def listening_addresses(pids: Iterable[int]) -> dict[int, list[str]]:
    """The TCP addresses each of ``pids`` listens on."""
    listening = _listening_inodes()
    result: dict[int, list[str]] = {}
    for pid in pids:
        addresses = set()
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if target.startswith("socket:["):
                        inode = int(target[8:-1])
                        if inode in listening:
                            addresses.add(listening[inode])
        result[pid] = sorted(addresses)
    return result


def poll(check: Callable[[], Any], timeout_s: float, what: str, every_s: float = 0.05) -> Any:
    """``check()`` until it returns something truthy (returned); AssertionError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while True:
        try:
            last = check()
        except (httpx.HTTPError, AssertionError) as exc:  # not there yet
            last = exc
        else:
            if last:
                return last
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s:g} s (last: {last!r})")
        time.sleep(every_s)


# -- the platform ----------------------------------------------------------------------------------------
class Platform:
    """One `modelhost up` (restartable on the same port and state dir), its log in a file."""

    def __init__(
        self,
        root: Path,
        args: Sequence[str] = (),
        *,
        env: dict[str, str] | None = None,
        token: str | None = None,
        host: str | None = None,
    ) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.port = free_port()
        self.host = host
        self.url = f"http://127.0.0.1:{self.port}"
        self.state_dir = root / "state"
        self.log_path = root / "up.log"
        self.args = list(args)
        self.token = token
        self.marker = uuid.uuid4().hex
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("MODELHOST_", "AWS_ENDPOINT_URL"))}
        self.env = {
            **clean,
            MARKER: self.marker,
            "MODELHOST_WORKERS": "1",  # one worker per instance: quicker to start on a small machine
            **(env or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.pids: list[int] = []  # every `up` this object started
        self.client = modelhost.Client(self.url, token=token or "")  # "" keeps $MODELHOST_TOKEN out of it

    # -- running -----------------------------------------------------------------------------
    def command(self) -> list[str]:
        command = [sys.executable, "-m", "modelhost", "up", "--port", str(self.port)]
        command += ["--state-dir", str(self.state_dir), *self.args]
        if self.host is not None:
            command += ["--host", self.host]
        if self.token:
            command += ["--token", self.token]
        return command

    def spawn(self) -> subprocess.Popen[bytes]:
        """Start `up` without waiting for it (see ``start``)."""
        with self.log_path.open("ab") as log:
            log.write(f"=== {time.strftime('%H:%M:%S')} {' '.join(self.command())}\n".encode())
            log.flush()
            process = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )
        self.pids.append(process.pid)
        return process

    def start(self, timeout_s: float = 60.0) -> Platform:
        self.process = self.spawn()
        self.wait_healthy(timeout_s)
        return self

    def wait_healthy(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        assert self.process is not None
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"modelhost up exited with {self.process.returncode}:\n{self.log()[-5000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/api/v1/health", timeout=1).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise AssertionError(f"modelhost up not healthy in {timeout_s:g} s:\n{self.log()[-5000:]}")
            time.sleep(0.05)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM and wait; the exit code. Killed (and AssertionError) if it does not stop in time."""
        process = self.process
        if process is None:
            return 0
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                raise AssertionError(f"modelhost up did not stop in {timeout_s:g} s:\n{self.log()[-5000:]}") from None
        return process.returncode

    def restart(self, timeout_s: float = 60.0) -> Platform:
        """SIGTERM, wait, then `up` again on the same port and state dir."""
        code = self.stop()
        assert code == 0, f"modelhost up exited with {code}:\n{self.log()[-5000:]}"
        return self.start(timeout_s)

    def kill9(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    # -- what it runs ---------------------------------------------------------------------------
    def _ours(self, *, include_up: bool) -> list[int]:
        up_pids = {str(p).encode() for p in self.pids}
        marker = f"{MARKER}={self.marker}".encode()
        state = str(self.state_dir).encode()
        live_up = self.pid if self.process is not None and self.process.poll() is None else None

        def ours(pid: int, environ: list[bytes], cmdline: bytes) -> bool:
            if pid in self.pids or state in cmdline:  # `up` itself
                return include_up
            if b"modelhost.runtime.launcher" in cmdline and live_up is not None and parent_of(pid) == live_up:
                return include_up  # the running up's warm launcher (what it forks are instances)
            if marker in environ:
                return True
            parent = next((e.split(b"=", 1)[1] for e in environ if e.startswith(b"MODELHOST_PARENT_PID=")), None)
            return parent in up_pids

        return processes_matching(ours)

    def descendants(self) -> list[int]:
        """Live processes that came from this platform (instances, their workers, orphans of a dead `up`),
        not `up` itself nor its instance launcher while `up` runs."""
        return self._ours(include_up=False)

    def leftovers(self) -> list[int]:
        """Every live process of this platform, `up` processes included (for the teardown)."""
        return self._ours(include_up=True)

    def listening(self) -> dict[int, list[str]]:
        """The TCP addresses `up`, its launcher, its instances and their workers listen on, by pid."""
        return {pid: found for pid, found in listening_addresses(self.leftovers()).items() if found}

    def close(self) -> list[str]:
        """Stop `up` and check nothing of it is left: the problems found (leftovers are killed)."""
        problems = []
        running = self.process is not None and self.process.poll() is None
        try:
            code = self.stop()
            if running and code != 0:  # one that exited before is the test's business
                problems.append(f"modelhost up exited with {code} on SIGTERM:\n{self.log()[-3000:]}")
        except AssertionError as exc:
            problems.append(str(exc))
        deadline = time.monotonic() + 10.0
        while (left := self.leftovers()) and time.monotonic() < deadline:
            time.sleep(0.1)
        if left:
            problems.append("left running after modelhost up stopped: " + "; ".join(describe_pid(p) for p in left))
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self.client.close()
        return problems

    # -- conveniences ----------------------------------------------------------------------------
    def cli(
        self, *args: str, check: bool = True, timeout_s: float = 120.0, **kwargs: Any
    ) -> subprocess.CompletedProcess[str]:
        """``python -m modelhost ARGS`` against this platform (MODELHOST_URL, MODELHOST_TOKEN)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("MODELHOST_")}
        env["MODELHOST_URL"] = self.url
        if self.token:
            env["MODELHOST_TOKEN"] = self.token
        env.update(kwargs.pop("env", {}))
        result = subprocess.run(
            [sys.executable, "-m", "modelhost", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout_s,
            check=False,
            **kwargs,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"modelhost {' '.join(args)} exited with {result.returncode}\nstdout:\n{result.stdout}\n"
                f"stderr:\n{result.stderr}\nplatform log:\n{self.log()[-5000:]}"
            )
        return result

    def diagnostics(self, endpoint: str | None = None) -> str:
        """The end of up's log and of the endpoint's instance logs, for failure messages."""
        text = f"--- modelhost up log:\n{self.log()[-4000:]}"
        if endpoint is not None:
            for path in sorted((self.state_dir / "logs" / endpoint).glob("*.log")):
                text += f"\n--- {path.name}:\n{path.read_text(errors='replace')[-3000:]}"
        return text

    def wait_in_service(self, endpoint: str, timeout_s: float = 90.0, **kwargs: Any) -> dict[str, Any]:
        """client.wait_in_service, then until its config's instances run (all Healthy); with the logs on failure.

        (After a restart the stored status says InService before the instances are back: see
        test_resilience.py::test_after_a_restart_inservice_means_serving.)
        """
        deadline = time.monotonic() + timeout_s
        try:
            described = self.client.wait_in_service(endpoint, timeout_s, **kwargs)
        except ClientError as exc:
            raise AssertionError(f"{endpoint}: {exc.code}: {exc.message}\n{self.diagnostics(endpoint)}") from exc

        def running(endpoint_: dict[str, Any]) -> bool:
            instances = [i for v in endpoint_["variants"] for i in v["instances"]]
            return (
                endpoint_["running_config_name"] == endpoint_["config_name"]
                and bool(instances)
                and all(i["state"] == "Healthy" for i in instances)
            )

        while not running(described):
            if time.monotonic() > deadline:
                raise AssertionError(f"{endpoint}: not running its config: {described}\n{self.diagnostics(endpoint)}")
            time.sleep(0.05)
            described = self.client.describe_endpoint(endpoint)
        return described

    def deploy(self, source: str | Path, endpoint: str, timeout_s: float = 90.0, **kwargs: Any) -> dict[str, Any]:
        """client.deploy (upload, create or update, wait), failing with the logs when it does not work."""
        try:
            return self.client.deploy(source, endpoint, timeout_s=timeout_s, **kwargs)
        except ClientError as exc:
            raise AssertionError(f"{endpoint}: {exc.code}: {exc.message}\n{self.diagnostics(endpoint)}") from exc

    def instance_pids(self, endpoint: str) -> list[int]:
        described = self.client.describe_endpoint(endpoint)
        return [i["pid"] for v in described["variants"] for i in v["instances"]]


StartPlatform = Callable[..., Platform]


@contextlib.contextmanager
def platforms(root: Path) -> Iterator[StartPlatform]:
    started: list[Platform] = []

    def start(*args: str, wait: bool = True, **kwargs: Any) -> Platform:
        platform = Platform(root / f"up-{len(started)}", args, **kwargs)
        started.append(platform)
        return platform.start() if wait else platform

    yield start
    problems = [problem for platform in started for problem in platform.close()]
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def start_platform(tmp_path: Path) -> Iterator[StartPlatform]:
    """start_platform(*up_args, env=..., token=..., host=...) -> a healthy Platform, checked at teardown."""
    with platforms(tmp_path) as start:
        yield start


@pytest.fixture
def platform(start_platform: StartPlatform) -> Platform:
    return start_platform()


# -- models ------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def sentiment_model(models_dir: Path) -> Path:
    """TF-IDF + logistic regression; answers 1 (positive) / 0 (negative) for ``["text", ...]``."""
    return sklearn_text_pipeline(models_dir / "sentiment")


@pytest.fixture(scope="session")
def sentiment_model_v2(models_dir: Path) -> Path:
    """The same task answered with words: "positive" / "negative" (tells the versions apart)."""
    import joblib
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    out = models_dir / "sentiment-words"
    out.mkdir()
    texts, labels = sentiment_corpus()
    words = ["positive" if label else "negative" for label in labels]
    joblib.dump(make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(texts, words), out / "model.joblib")
    return out


@pytest.fixture(scope="session")
def broken_model(models_dir: Path) -> Path:
    """A folder whose model.joblib is not a pickle: detected as sklearn, fails to load."""
    out = models_dir / "broken"
    out.mkdir()
    (out / "model.joblib").write_bytes(b"this is not a pickle\n" * 8)
    return out
