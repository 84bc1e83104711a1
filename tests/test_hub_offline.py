"""Loading with no network: path-like names fail at once ("no such directory"), hub ids fail within ~1 s
with exactly one line on stderr (closed port, blackhole server, HF_HUB_OFFLINE), cached repos still load.

The hub is simulated by `HF_ENDPOINT` in a subprocess (huggingface_hub reads it at import): a closed port
(connection refused at once) and a local "blackhole" socket that accepts connections and never answers
(bounded only by our probe timeout).
"""

from __future__ import annotations

import json
import os
import pathlib
import hashlib
import http.server
import shutil
import socket
import subprocess
import sys
import textwrap
import threading

import pytest

from conftest import PROCESSOR_FILES, fixture_dir
from hubert_tf import hub

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLOSED = "http://127.0.0.1:9"  # discard port: nothing listens, connections are refused
LIMIT = 2.0  # seconds a failing hub lookup may take (interpreter start not counted)

# Runs one loader in a fresh interpreter; prints the call's wall time (stdout, last line) and the error
# as it would reach a user (stderr). Python warnings and every logger's output also go to stderr.
SCRIPT = textwrap.dedent("""
    import logging, sys, time
    logging.basicConfig(level=logging.WARNING)
    what, name = sys.argv[1], sys.argv[2]
    if what == "model":
        from hubert_tf import TFHubertForCTC as loader
        print("--- loading", file=sys.stderr, flush=True)  # TensorFlow's start-up lines come before this
    elif what == "processor":
        from hubert_tf import HubertProcessor as loader
    elif what == "options":  # the hub options through huggingface_hub's real download path
        from hubert_tf import HubertConfig
        for kwargs in ({}, {"revision": "v1", "subfolder": "sub"}, {"force_download": True}):
            print(HubertConfig.from_pretrained(name, **kwargs).num_hidden_layers)
        sys.exit(0)
    elif what == "probe":
        from hubert_tf import hub
        times = []
        for _ in range(2):
            start = time.perf_counter()
            reason = hub.hub_unreachable()
            times.append(time.perf_counter() - start)
        print(reason is not None, " ".join(f"{t:.3f}" for t in times))
        sys.exit(0)
    else:
        from hubert_tf import HubertConfig as loader
    start = time.perf_counter()
    try:
        loaded = loader.from_pretrained(name)
        print(type(loaded).__name__)
    except OSError as error:
        print(f"error: {error}", file=sys.stderr)
    print(f"{time.perf_counter() - start:.3f}")
    print("huggingface_hub" in sys.modules)
""")


def run(what, name, cwd, **env):
    full = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    full.update(PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3", HF_HOME=str(cwd / "hf_home"), **env)
    done = subprocess.run([sys.executable, "-c", SCRIPT, what, name], cwd=cwd, env=full, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.split(), done.stderr.split("--- loading\n")[-1]


@pytest.fixture
def blackhole():
    """A local server that accepts connections and never answers (a hung hub / captive network)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held, stop = [], threading.Event()

    def serve():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


# ------------------------------------------------------------------------------------------ path-like names


def test_path_like_names_say_no_such_directory_without_huggingface_hub(tmp_path):
    (tmp_path / "models").mkdir()  # so "models/nonexist" is a mistyped path, not an organisation
    (tmp_path / "a_file").write_text("x")
    script = textwrap.dedent("""
        import os, sys, time
        from hubert_tf import HubertConfig, HubertFeatureExtractor, HubertProcessor
        from hubert_tf.hub import resolve_file
        for name in sys.argv[1:]:
            loaders = [HubertProcessor.from_pretrained, HubertFeatureExtractor.from_pretrained,
                       lambda n: resolve_file(n, "config.json")]
            if not os.path.isfile(name):  # a config also loads from its config.json file itself
                loaders.append(HubertConfig.from_pretrained)
            for load in loaders:
                start = time.perf_counter()
                try:
                    load(name)
                except OSError as error:
                    print(f"{name}|{time.perf_counter() - start:.4f}|{error}")
        print("huggingface_hub" in sys.modules)
    """)
    names = ["models/nonexist", "./x", "/abs/x", "~/x", "x\\y", "a/b/c", "a_file", "bad name"]
    done = subprocess.run([sys.executable, "-c", script, *names], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": REPO}, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[-1] == "False", "huggingface_hub was imported for a local path"
    rows = [line.split("|", 2) for line in lines[:-1]]
    assert [r[0] for r in rows] == [n for n in names for _ in range(3 if n == "a_file" else 4)], done.stdout
    for name, seconds, message in rows:
        assert message.startswith(f"no such directory: {name}"), (name, message)
        assert float(seconds) < 0.05, (name, seconds)
    assert all("(it is a file" in message for name, _, message in rows if name == "a_file")


def test_repo_ids_go_to_the_hub_and_paths_do_not(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("facebook/hubert-base-ls960", "hubert-base-ls960", "org/name.v2", "models/nonexist"):
        assert hub.locate(name) == (name, False), name
    for name in ("./x", "/x", "~/x", "x\\y", "a/b/c", "org--x/name", "x..y", "name.git", "-x", "x/"):
        with pytest.raises(OSError, match="^no such directory: "):
            hub.locate(name)
    (tmp_path / "models").mkdir()
    with pytest.raises(OSError, match="^no such directory: models/nonexist$"):
        hub.locate("models/nonexist")
    with pytest.raises(OSError, match="no such directory"):
        hub.locate(pathlib.Path("org/name"))  # a Path is always a path, never a repo id
    assert hub.locate(str(tmp_path), "models") == (os.path.join(str(tmp_path), "models"), True)
    with pytest.raises(OSError, match=r"no such directory: .*nope \(subfolder='nope'"):
        hub.locate(str(tmp_path), "nope")


# ------------------------------------------------------------------------------------------ unreachable hub


@pytest.mark.parametrize("what", ["config", "processor"])
def test_hub_id_with_closed_port_fails_fast_in_one_line(tmp_path, what):
    out, err = run(what, "facebook/hubert-base-ls960", tmp_path, HF_ENDPOINT=CLOSED)
    assert err.count("\n") == 1 and err.startswith("error: facebook/hubert-base-ls960 is not a local directory"), err
    assert "not in the local hub cache" in err and "127.0.0.1:9 does not answer" in err, err
    assert float(out[-2]) < LIMIT, out


def test_hub_id_with_blackhole_endpoint_fails_within_the_probe_timeout(tmp_path, blackhole):
    out, err = run("config", "facebook/hubert-base-ls960", tmp_path, HF_ENDPOINT=blackhole)
    assert err.count("\n") == 1 and "does not answer" in err and "Timeout" in err, err
    # Bounded by the probe (1 s) instead of huggingface_hub's 10 s timeout + 60 s retries.
    assert hub.PROBE_TIMEOUT <= float(out[-2]) < LIMIT, out


def test_probe_answer_is_kept(tmp_path, blackhole):
    out, _ = run("probe", "-", tmp_path, HF_ENDPOINT=blackhole)
    unreachable, first, second = out
    assert unreachable == "True"
    assert float(first) >= hub.PROBE_TIMEOUT * 0.9 and float(second) < 0.01, out


def test_hf_hub_offline_fails_at_once_without_network(tmp_path, blackhole):
    # With HF_HUB_OFFLINE the blackhole is never asked (else the call would take the probe's second).
    out, err = run("config", "facebook/hubert-base-ls960", tmp_path, HF_ENDPOINT=blackhole, HF_HUB_OFFLINE="1")
    assert err.count("\n") == 1 and "HF_HUB_OFFLINE is set" in err, err
    assert float(out[-2]) < 0.5 * hub.PROBE_TIMEOUT + 0.5, out


@pytest.mark.slow  # ~14 s on a loaded machine (TensorFlow's import); the config cases cover the same lookup
def test_model_hub_id_with_closed_port_fails_fast_in_one_line(tmp_path):
    out, err = run("model", "facebook/hubert-large-ls960-ft", tmp_path, HF_ENDPOINT=CLOSED)
    assert err.count("\n") == 1 and err.startswith("error: facebook/hubert-large-ls960-ft is not a local"), err
    assert float(out[-2]) < LIMIT, out


def _cache_repo(root, repo_id, files, revision="main", commit="b" * 40, subfolder=""):
    """A huggingface_hub cache entry (snapshot + ref) holding `files` {name: source path}."""
    folder = root / ("models--" + repo_id.replace("/", "--"))
    snapshot = folder / "snapshots" / commit / subfolder
    snapshot.mkdir(parents=True, exist_ok=True)
    for name, source in files.items():
        shutil.copy(source, snapshot / name)
    (folder / "refs").mkdir(exist_ok=True)
    (folder / "refs" / revision).write_text(commit)
    return folder


def test_cached_repo_loads_when_the_hub_is_unreachable(tmp_path):
    files = {"config.json": os.path.join(fixture_dir("base_style"), "config.json")}
    files.update({name: os.path.join(PROCESSOR_FILES, name) for name in os.listdir(PROCESSOR_FILES)})
    _cache_repo(tmp_path / "hf_home" / "hub", "someone/tiny", files)
    for what, expected in (("config", "HubertConfig"), ("processor", "HubertProcessor")):
        out, err = run(what, "someone/tiny", tmp_path, HF_ENDPOINT=CLOSED)
        assert out[0] == expected and err == "", (out, err)
        assert float(out[-2]) < LIMIT, out


def test_hf_hub_offline_set_after_import_is_honoured(tmp_path, monkeypatch):
    _cache_repo(tmp_path, "someone/tiny", {"config.json": os.path.join(fixture_dir("base_style"), "config.json")})
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub, "hub_unreachable", lambda endpoint=None: pytest.fail("probed the network offline"))
    path = hub.resolve_file("someone/tiny", "config.json", cache_dir=str(tmp_path))
    assert json.load(open(path))["model_type"] == "hubert"
    assert hub.resolve_file("someone/tiny", "vocab.json", cache_dir=str(tmp_path), required=False) is None
    with pytest.raises(OSError, match="vocab.json of someone/tiny is not in the local hub cache"):
        hub.resolve_file("someone/tiny", "vocab.json", cache_dir=str(tmp_path))
    with pytest.raises(OSError, match="cannot force_download config.json: HF_HUB_OFFLINE is set"):
        hub.resolve_file("someone/tiny", "config.json", cache_dir=str(tmp_path), force_download=True)
    with pytest.raises(OSError, match="someone/other is not a local directory and not in the local hub cache"):
        hub.resolve_file("someone/other", "config.json", cache_dir=str(tmp_path), required=False)


@pytest.fixture
def fake_hub(tmp_path):
    """A local HTTP server answering huggingface_hub's HEAD / GET `/<repo>/resolve/<revision>/<path>` from
    tmp_path/served/<revision>/<path>; yields (endpoint, the list of "METHOD path" requests)."""
    served, requests = tmp_path / "served", []

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def answer(self, body):
            requests.append(f"{self.command} {self.path}")
            parts = self.path.split("?")[0].strip("/").split("/")
            path = served.joinpath(*parts[3:]) if len(parts) > 4 and parts[2] == "resolve" else None
            if path is None or not path.is_file():
                self.send_response(200 if self.path == "/" else 404)
                self.send_header("X-Error-Code", "EntryNotFound")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data = path.read_bytes()
            self.send_response(200)
            self.send_header("X-Repo-Commit", "e" * 40)
            self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if body:
                self.wfile.write(data)

        def do_HEAD(self):
            self.answer(False)

        def do_GET(self):
            self.answer(True)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", requests, served
    server.shutdown()
    server.server_close()


def test_reachable_hub_downloads_with_revision_subfolder_and_force_download(tmp_path, fake_hub):
    endpoint, requests, served = fake_hub
    config = json.load(open(os.path.join(fixture_dir("base_style"), "config.json")))
    for where, layers in ((served / "main", 1), (served / "v1" / "sub", 3)):
        where.mkdir(parents=True)
        (where / "config.json").write_text(json.dumps({**config, "num_hidden_layers": layers}))
    out, err = run("options", "someone/tiny", tmp_path, HF_ENDPOINT=endpoint)
    assert out == ["1", "3", "1"] and "Traceback" not in err, (out, err)
    gets = [r for r in requests if r.startswith("GET ") and "/resolve/" in r]  # (huggingface_hub's own
    # once-a-day GET /api/agent-harnesses aside)
    assert gets == ["GET /someone/tiny/resolve/main/config.json", "GET /someone/tiny/resolve/v1/sub/config.json",
                    "GET /someone/tiny/resolve/main/config.json"], requests  # force_download fetched again
    assert requests[0] == "HEAD /", requests  # the one reachability probe, then huggingface_hub's own calls
    assert requests.count("HEAD /") == 1, requests

