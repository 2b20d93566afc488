"""Train and start the Rasa server that lives in its own virtualenv (.venv-rasa).

Training is keyed by a hash of the training files (config.yml, domain.yml, nlu/, rasa_components/ and the e5
encoder's card), and the trained model is
kept in a cache outside the checkout, so a fresh clone with unchanged data starts without retraining.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import yaml

from bot.ports import free_port
from bot.rasa_tokens import ACTION_TOKEN_HEADER, RASA_TOKEN_ENV, action_token, known_rasa_token, rasa_token
from bot.settings import PROJECT_ROOT
from bot.setup_times import record as record_step
from knowledge.e5_exports import cache_dir, onnx_e5_dir
from rasa_components.e5_encoder import ENCODER_CARD, ENCODER_DIR_ENV

RASA_BIN = PROJECT_ROOT / ".venv-rasa" / "bin" / "rasa"
MODELS_DIR = PROJECT_ROOT / "models"
CONFIG_FILE = PROJECT_ROOT / "config.yml"
TRAINING_DIRS = ("nlu", "rasa_components")


def rasa_env(root: Path = PROJECT_ROOT) -> dict[str, str]:
    """Rasa's environment: no telemetry (there is no network), quiet TensorFlow, our components importable (those
    of `root`: a committed tree's for its model, see `committed`)."""
    env = dict(os.environ)
    env.update(
        {
            "RASA_TELEMETRY_ENABLED": "false",
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "SQLALCHEMY_SILENCE_UBER_WARNING": "1",
            "PYTHONWARNINGS": "ignore",
        }
    )
    # Only for rasa_components/ (custom pipeline components); Rasa never imports the app's packages.
    env["PYTHONPATH"] = str(root)
    env.setdefault(ENCODER_DIR_ENV, str(onnx_e5_dir()))  # read by training only: the model carries the encoder
    return env


def training_hash(config: Path = CONFIG_FILE, root: Path = PROJECT_ROOT) -> str:
    """Content hash of what training reads; the config counts by content, so an identical copy reuses the model, and
    files count by their path inside `root`, so a committed tree with the same content hashes the same."""
    digest = hashlib.sha256(config.read_bytes())
    paths = [root / "domain.yml"]
    for folder in TRAINING_DIRS:
        paths += sorted(p for p in (root / folder).rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    for path in paths:
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    card = Path(os.environ.get(ENCODER_DIR_ENV) or onnx_e5_dir()) / ENCODER_CARD
    digest.update(b"e5 encoder")
    digest.update(card.read_bytes() if card.is_file() else b"missing")
    return digest.hexdigest()[:16]


def ensure_model(log=print, config: Path = CONFIG_FILE, root: Path = PROJECT_ROOT) -> Path:  # type: ignore[no-untyped-def]
    """The model for the current training data: from models/, from the cache, or trained now.

    Callers in parallel (test sessions, a bench, `make model`) take turns on a file lock: the first trains,
    the others wait and then find the model, instead of training the same thing side by side on 2 cores.
    """
    MODELS_DIR.mkdir(exist_ok=True)
    with (MODELS_DIR / ".train.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _model_for(config, log, root)


def _model_for(config: Path, log, root: Path) -> Path:  # type: ignore[no-untyped-def]
    name = f"gridbot-{training_hash(config, root)}.tar.gz"
    target = MODELS_DIR / name
    cached = cache_dir() / "models" / name
    if target.exists():
        log(f"rasa model up to date: models/{name}")
        return target
    if cached.exists():
        _link_or_copy(cached, target)
        log(f"rasa model restored from cache: models/{name}")
        return target
    log(
        f"training data changed: training the Rasa model from {config.name} (about 5 minutes on 2 cores; less when"
        " Rasa's own training cache in .rasa/ still holds the parts that did not change)…"
    )
    started = time.monotonic()
    subprocess.run(
        [
            str(RASA_BIN),
            "train",
            "--config",
            str(config),
            "--domain",
            "domain.yml",
            "--data",
            "nlu",
            "--out",
            str(MODELS_DIR),
            "--fixed-model-name",
            name.removesuffix(".tar.gz"),
        ],
        cwd=root,
        env=rasa_env(root),
        check=True,
    )
    seconds = time.monotonic() - started
    cached.parent.mkdir(parents=True, exist_ok=True)
    _link_or_copy(target, cached)
    training_record(cached).write_text(json.dumps({"train_seconds": round(seconds, 1), "cpus": os.cpu_count()}))
    log(f"trained models/{name} in {seconds:.0f} s")
    record_step("Rasa training", seconds)
    return target


def _link_or_copy(source: Path, target: Path) -> None:
    """The same file under both names (a model is never rewritten in place: a new model has a new name), so the
    checkout's models/ costs no disk beside the cache; a copy where they are on different disks."""
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    try:
        os.link(source, partial)
    except OSError:
        shutil.copyfile(source, partial)
    partial.replace(target)


def training_record(model: Path) -> Path:
    """Beside a cached model: how long its training took, for the NLU benchmark's training-time figure (a model
    restored from the cache has no time of its own)."""
    return model.with_name(model.name.removesuffix(".tar.gz") + ".training.json")


def training_seconds(model: Path) -> float | None:
    """The recorded training time of `model` (in models/ or the cache), None when it was never timed here."""
    for record in (training_record(model), training_record(cache_dir() / "models" / model.name)):
        try:
            return float(json.loads(record.read_text())["train_seconds"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return None


# Rasa's Redis tracker store, keeping earlier conversation sessions apart (rasa_ext/stores/session_tracker_store.py).
SESSION_TRACKER_STORE = "rasa_ext.stores.session_tracker_store.SessionRedisTrackerStore"
# Rasa's Redis lock store, a ticket taken and released in one atomic call each (rasa_ext/stores/ticket_lock_store.py).
TICKET_LOCK_STORE = "rasa_ext.stores.ticket_lock_store.AtomicRedisLockStore"


def redis_store(redis_url: str) -> dict[str, str | int | bool]:
    """Rasa's Redis store settings for a REDIS_URL: `url` (the host), `port`, `db`, and the URL's credentials
    (`username`, `password`, percent-decoded) and `use_ssl` for `rediss://`, which Rasa's stores also take."""
    parsed = httpx.URL(redis_url)
    store: dict[str, str | int | bool] = {
        "url": parsed.host or "127.0.0.1", "port": parsed.port or 6379, "db": int(parsed.path.strip("/") or 0),
    }  # fmt: skip
    if parsed.username:
        store["username"] = parsed.username
    if parsed.password:
        store["password"] = parsed.password
    if parsed.scheme == "rediss":
        store["use_ssl"] = True
    return store


def write_endpoints(
    path: Path, action_url: str, redis_url: str | None, key_prefix: str = "gridbot", *, token: str | None = None
) -> Path:
    """Endpoints for this run: our action endpoint, and Redis tracker/lock stores when Redis is configured.

    Rasa's action calls carry `token` (default: bot.rasa_tokens.action_token(), this process's) in a header,
    which Rasa's EndpointConfig sends with every request; the app's /webhook refuses calls without it. The file
    holds that secret (and Redis's password), so only its owner may read it.
    `key_prefix` must be alphanumeric (Rasa ignores any other); separate prefixes keep runs apart.
    """
    action = {"url": action_url, "headers": {ACTION_TOKEN_HEADER: token or action_token()}}
    endpoints: dict[str, object] = {"action_endpoint": action}
    if redis_url:
        store = redis_store(redis_url)
        week = 7 * 24 * 3600
        endpoints["tracker_store"] = {"type": SESSION_TRACKER_STORE, **store, "key_prefix": key_prefix, "record_exp": week}
        endpoints["lock_store"] = {"type": TICKET_LOCK_STORE, **store, "key_prefix": key_prefix}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.chmod(0o600)  # an existing file keeps its mode through touch
    path.write_text(yaml.safe_dump(endpoints, allow_unicode=True), encoding="utf-8")
    return path


def single_threaded(env: dict[str, str]) -> dict[str, str]:
    """Math on one thread (the e5 encoder's onnxruntime pool, sized from OMP_NUM_THREADS by
    rasa_components/e5_encoder.py, and TensorFlow's pools) for one-server-per-core deployments.

    A Rasa server handles one request at a time on its event loop; the threads only help a lone message
    (a parse 20 → 26 ms here) and spin-wait between operations, ~1/3 more CPU per parse. Two single-threaded
    servers on 2 cores parse ~78 messages/s against ~52 for one threaded server (bench/e2e.py).
    """
    one = {"OMP_NUM_THREADS": "1", "TF_INTRA_OP_PARALLELISM_THREADS": "1", "TF_INTER_OP_PARALLELISM_THREADS": "1"}
    return {**env, **one}


_PR_SET_PDEATHSIG = 1  # prctl(2)


def die_with_parent() -> None:
    """In the child before it runs Rasa (Linux): SIGTERM when the process that started it dies, even by SIGKILL — a
    `kill -9` of `gridbot run` otherwise leaves its Rasa serving with nobody to stop it. The kernel sends it when the
    starting *thread* ends: the supervisor starts Rasa from its watch threads, which live as long as the app."""
    if sys.platform != "linux":
        return
    import ctypes
    import signal

    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)


def start_rasa(
    model: Path,
    port: int,
    endpoints: Path,
    log_file: Path,
    *,
    single_thread: bool = False,
    auth_token: str | None = None,
    root: Path = PROJECT_ROOT,
    own_group: bool = False,
) -> subprocess.Popen[bytes]:
    """`rasa run` on 127.0.0.1:port with its HTTP API behind `auth_token` (default: bot.rasa_tokens.rasa_token(),
    this process's), which the app's RasaClient sends as `?token=`. Rasa checks it on its API (/model/parse,
    /status, /conversations…) but not on input channels; rasa_ext.channels.prepared_rest checks the same token, read
    from RASA_AUTH_TOKEN in Rasa's environment.

    `own_group`: in a process group (session) of its own, as the supervisor of `gridbot run` starts it: a Ctrl+C in
    the terminal reaches only the app, which stops Rasa itself (a Rasa ended by the terminal's signal would look
    like a crash to be restarted), and the whole group can be signalled at once; and ended with the app, should the
    app be killed outright (`die_with_parent`)."""
    token = auth_token or rasa_token()
    env = single_threaded(rasa_env(root)) if single_thread else rasa_env(root)
    env[RASA_TOKEN_ENV] = token
    log_file.parent.mkdir(parents=True, exist_ok=True)
    # The child keeps its own copy of the log file; ours is closed (a supervisor restarting it would leak one each).
    with log_file.open("ab") as out:
        return subprocess.Popen(
            [
                str(RASA_BIN),
                "run",
                "--enable-api",
                "--auth-token",
                token,
                "--model",
                str(model),
                "--port",
                str(port),
                "-i",
                "127.0.0.1",
                "--endpoints",
                str(endpoints),
                "--credentials",
                "credentials.yml",
                "--cors",
                "http://127.0.0.1",
            ],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=own_group,
            preexec_fn=die_with_parent if own_group else None,  # a prctl call only: safe after fork in a threaded app
        )


def wait_ready(
    url: str, process: subprocess.Popen[bytes] | None = None, timeout: float = 180.0, token: str | None = None
) -> None:
    """Block until Rasa has loaded its model; fail early if the process dies. `token`: Rasa's API token (default:
    the one this process started Rasa with, if any)."""
    token = token or known_rasa_token()
    params = {"token": token} if token else None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"rasa exited with code {process.returncode} before it was ready")
        try:
            response = httpx.get(f"{url}/status", params=params, timeout=2)
            if response.status_code == 200 and response.json().get("model_file"):
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise TimeoutError(f"rasa at {url} not ready after {timeout:.0f} s")


@contextmanager
def serving(model: Path, workdir: Path, root: Path = PROJECT_ROOT) -> Iterator[str]:
    """A throwaway Rasa server for NLU only (parse; no action endpoint, in-memory trackers); yields its URL.
    `root`: whose custom components the model loads (a committed tree's, for its model)."""
    port = free_port()
    endpoints = write_endpoints(workdir / f"endpoints-{port}.yml", "http://127.0.0.1:9/webhook", None)
    process = start_rasa(model, port, endpoints, workdir / f"rasa-{port}.log", root=root)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, process)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


@contextmanager
def committed(rev: str = "HEAD", repository: Path = PROJECT_ROOT) -> Iterator[Path]:
    """The training files as committed at `rev` (config.yml, domain.yml, nlu/, rasa_components/) in a temporary
    tree: `ensure_model(config=tree / "config.yml", root=tree)` is that commit's model (from the cache when it was
    trained before), so a benchmark can print the committed model's figures beside the working tree's."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", rev, "config.yml", "domain.yml", *TRAINING_DIRS],
        cwd=repository,
        capture_output=True,
        check=True,
    ).stdout
    with tempfile.TemporaryDirectory(prefix="gridbot-committed-") as folder:
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(folder, filter="data")
        yield Path(folder)


if __name__ == "__main__":
    ensure_model(lambda line: print(line, file=sys.stderr))
