"""The local student: a tiny random model (built here, nothing downloaded) served by
``skillmix.llm.hf_server`` through :class:`LocalStudent`, asked over real HTTP (urllib, the ``openai``
client and the project's client): usage counts, batching, repeatable answers, bad requests; models refused
before anything starts; the real OPENAI_API_KEY kept from the server; the cache identity; the choice of vLLM.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import shutil
import sys
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from skillmix.llm import local
from skillmix.llm.local import LocalStudent, StudentServerError, choose_engine

QUESTION = [{"role": "user", "content": "Write about a fox that jumps over a lazy dog."}]
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """Two saves of one tiny random model: ``templated`` (ChatML) and ``bare`` (no chat template), and
    ``template``, the ChatML template as a Jinja file."""
    from skillmix.training.config import TinyModel
    from skillmix.training.tiny import CHAT_TEMPLATES, build_model, build_tokenizer

    root = tmp_path_factory.mktemp("students")
    texts = ["the quick brown fox jumps over the lazy dog", "a metaphor, a red herring and an aphorism"] * 20
    tokenizer = build_tokenizer(texts, vocab_size=300, chat_format="chatml")
    shape = TinyModel(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=32)
    model = build_model(shape, tokenizer, max_length=256)
    tokenizer.save_pretrained(root / "templated")
    model.save_pretrained(root / "templated")
    tokenizer.chat_template = None
    tokenizer.save_pretrained(root / "bare")
    model.save_pretrained(root / "bare")
    (root / "chatml.jinja").write_text(CHAT_TEMPLATES["chatml"])
    return {"templated": root / "templated", "bare": root / "bare", "template": root / "chatml.jinja"}


@pytest.fixture(scope="module")
def servers(models, tmp_path_factory):
    """The templated model, and the bare one with the template file: started together (most of a start-up
    is importing torch and transformers)."""
    logs = tmp_path_factory.mktemp("logs")
    started = {
        "templated": LocalStudent(str(models["templated"]), log_path=logs / "templated.log",
                                  engine="transformers", threads=1),
        "bare": LocalStudent(str(models["bare"]), chat_template=models["template"], engine="transformers",
                             threads=1, max_batch=2),
    }  # fmt: skip
    try:
        for student in started.values():
            student.launch()  # from this thread: a server dies with the thread that started it
        for student in started.values():
            student.wait_ready()
        yield started
    finally:
        for student in started.values():
            student.stop()


@pytest.fixture
def served(servers) -> LocalStudent:
    return servers["templated"]


def post(student: LocalStudent, body: object, raw: bytes | None = None) -> tuple[int, dict]:
    data = raw if raw is not None else json.dumps(body).encode()
    request = urllib.request.Request(f"{student.base_url}/chat/completions", data=data,
                                     headers={"Content-Type": "application/json"})  # fmt: skip
    try:
        with OPENER.open(request, timeout=60) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def get(student: LocalStudent, route: str) -> dict:
    with OPENER.open(f"http://{student.host}:{student.port}{route}", timeout=10) as response:
        return json.load(response)


def ask(student: LocalStudent, messages=QUESTION, **options) -> dict:
    body = {"model": student.model_name, "messages": messages, "max_tokens": 6, "temperature": 0, **options}
    status, answer = post(student, body)
    assert status == 200, answer
    return answer


def prompt_length(folder: Path, messages, template: Path | None = None) -> int:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    if template is not None:
        tokenizer.chat_template = template.read_text()
    return len(tokenizer.apply_chat_template(messages, add_generation_prompt=True)["input_ids"])


# ------------------------------------------------------------------ the served model


def test_the_openai_client_gets_a_completion_with_true_usage(served, models):
    from openai import OpenAI

    assert served.engine == "transformers" and served.model_name == "templated"
    assert [m["id"] for m in get(served, "/v1/models")["data"]] == ["templated"]
    client = OpenAI(base_url=served.base_url, api_key="unused", max_retries=0)
    reply = client.chat.completions.create(
        model=served.model_name, messages=QUESTION, max_tokens=5, temperature=0
    )
    choice, usage = reply.choices[0], reply.usage
    assert isinstance(choice.message.content, str) and choice.finish_reason in ("stop", "length")
    assert usage.prompt_tokens == prompt_length(models["templated"], QUESTION)
    assert (
        1 <= usage.completion_tokens <= 5
        and usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    )
    assert choice.finish_reason == "stop" or usage.completion_tokens == 5


def test_the_project_client_reaches_the_student_by_its_identity(served):
    from skillmix.llm.client import LLMClient

    endpoint = served.endpoint()
    assert endpoint.cache_identity == served.identity and endpoint.model == served.model_name
    client = LLMClient(endpoint)
    first = asyncio.run(client.complete(QUESTION, temperature=1.0, max_tokens=8, seed=3))
    again = asyncio.run(client.complete(QUESTION, temperature=1.0, max_tokens=8, seed=3))
    assert first.status == "ok" and first.input_tokens > 0 and 1 <= first.output_tokens <= 8
    assert again.text == first.text and client.stats["cached"] == 1


def test_concurrent_requests_share_one_generate_call(served):
    prompts = [[{"role": "user", "content": "fox " * (i + 1)}] for i in range(8)]
    alone = [ask(served, p)["choices"][0]["message"]["content"] for p in prompts[:3]]
    before = get(served, "/stats")
    with ThreadPoolExecutor(len(prompts)) as pool:
        answers = list(pool.map(lambda p: ask(served, p, max_tokens=12), prompts))
    after = get(served, "/stats")
    assert after["requests"] - before["requests"] == len(prompts)
    assert after["batches"] - before["batches"] < len(prompts) and after["largest_batch"] > 1
    # left padding changes nothing: greedy answers in a batch start as they do alone
    for text, answer in zip(alone, answers[:3], strict=True):
        assert answer["choices"][0]["message"]["content"].startswith(text)


def test_greedy_and_seeded_sampling_repeat(served):
    assert ask(served)["choices"][0]["message"]["content"] == ask(served)["choices"][0]["message"]["content"]
    sampled = [
        ask(served, temperature=1.0, seed=11, max_tokens=10)["choices"][0]["message"] for _ in range(2)
    ]
    assert sampled[0] == sampled[1]


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"messages": QUESTION, "n": 2}, 400, "n"),
        ({"max_tokens": 4}, 400, "messages"),
        ({"messages": "hello"}, 400, "messages"),
        ({"messages": [{"role": "user"}]}, 400, "messages"),
        ({"messages": QUESTION, "max_tokens": 0}, 400, "max_tokens"),
        ({"messages": QUESTION, "max_tokens": 10_000}, 400, "max_tokens"),  # past the context
        ({"messages": QUESTION, "temperature": "hot"}, 400, "temperature"),
        ({"messages": QUESTION, "stream": True}, 400, "stream"),
        ({"messages": QUESTION, "model": "another"}, 404, "model"),
        ([1, 2], 400, None),
    ],
)
def test_bad_requests_get_an_error_body_and_the_server_keeps_serving(served, body, status, param):
    code, answer = post(served, body)
    assert code == status and answer["error"]["param"] == param and answer["error"]["message"]
    assert ask(served)["choices"][0]["finish_reason"] in ("stop", "length")


def test_malformed_bodies_and_routes_get_errors(served):
    for raw in (b"{not json", b"\xff\xfe", b""):
        code, answer = post(served, None, raw=raw)
        assert code == 400 and "JSON" in answer["error"]["message"]
    connection = http.client.HTTPConnection(served.host, served.port, timeout=10)
    connection.putrequest("POST", "/v1/chat/completions")
    connection.putheader("Content-Length", "many")
    connection.endheaders()
    assert connection.getresponse().status == 400
    connection.close()
    with pytest.raises(urllib.error.HTTPError) as missing:
        get(served, "/v1/nothing")
    assert missing.value.code == 404 and json.load(missing.value)["error"]["type"] == "not_found_error"
    assert ask(served)["usage"]["prompt_tokens"] > 0


# ------------------------------------------------------------------ refused before anything starts


def test_a_model_without_chat_template_is_refused_before_anything_starts(models, monkeypatch):
    def no_process(*args, **kwargs):
        raise AssertionError("a process was started")

    monkeypatch.setattr(local.subprocess, "Popen", no_process)
    student = LocalStudent(str(models["bare"]))
    with pytest.raises(ValueError, match="has no chat template; pass --chat-template FILE") as refused:
        student.start()
    message = str(refused.value)
    assert "\n" not in message and str(models["bare"]) in message and student.process is None


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("{root}/missing", "no such folder"),
        ("{root}", "has no config.json"),
        ("{root}/templated@v1", "a local folder has no revision"),
        ("skillmix-tester/no-such-model@v1", "cannot be resolved on the Hub"),
        ("not a model id", "neither a folder nor a Hub model id"),
    ],
)
def test_a_model_that_cannot_be_found_is_one_line(models, monkeypatch, tmp_path, model, message):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # nothing leaves the machine
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(ValueError, match=message) as refused:
        LocalStudent(model.format(root=models["templated"].parent)).check()
    assert "\n" not in str(refused.value)


def test_a_folder_with_an_at_in_its_name_is_a_folder_and_cannot_be_pinned(models, tmp_path):
    folder = tmp_path / "run@2"
    shutil.copytree(models["templated"], folder)
    source = local.resolve_model(str(folder))
    assert source.folder == folder.resolve() and source.revision is None and source.name == "run@2"
    with pytest.raises(ValueError, match=r"a local folder has no revision; drop '@v1'$"):
        local.resolve_model(f"{folder}@v1")


def test_a_bad_chat_template_file_is_refused(models, tmp_path):
    broken = tmp_path / "broken.jinja"
    broken.write_text("{% for m in messages %}{{ m['content'] }")
    for path, message in ((tmp_path / "missing.jinja", "cannot be read"), (broken, "line 1")):
        with pytest.raises(ValueError, match=message):
            LocalStudent(str(models["bare"]), chat_template=path).check()


def test_a_chat_template_file_serves_a_model_without_one_and_stops_with_it(servers, models):
    student = servers["bare"]
    answer = ask(student, max_tokens=3)
    assert answer["usage"]["prompt_tokens"] == prompt_length(models["bare"], QUESTION, models["template"])
    process, log = student.process, student.log_path
    student.stop()
    assert student.process is None and process.poll() is not None
    assert not log.exists()  # a temporary log is removed after a clean stop
    with pytest.raises(OSError):
        OPENER.open(f"http://{student.host}:{student.port}/v1/models", timeout=2)


def test_a_server_that_dies_is_reported_with_the_end_of_its_log(models, tmp_path, monkeypatch):
    student = LocalStudent(str(models["templated"]), log_path=tmp_path / "student.log")
    crash = "import sys; print('cannot load the weights', flush=True); sys.exit(3)"
    monkeypatch.setattr(student, "argv", lambda: [sys.executable, "-c", crash])
    with pytest.raises(StudentServerError, match=r"exited with code 3(.|\n)*cannot load the weights"):
        student.start()
    assert student.process is None and (tmp_path / "student.log").exists()


# A stand-in for the server (argv PORT MODEL RECORD): it notes the key in its environment and the
# Authorization header of each request in RECORD, one JSON object a line.
RECORDING_SERVER = r"""
import json, os, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port, name, record = int(sys.argv[1]), sys.argv[2], sys.argv[3]

def note(**entry):
    with open(record, "a") as f:
        f.write(json.dumps(entry) + "\n")

class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, body):
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.answer({"object": "list", "data": [{"id": name, "object": "model"}]})

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        note(authorization=self.headers.get("Authorization"))
        message = {"role": "assistant", "content": "Answer: A calm report."}
        self.answer({"id": "c", "object": "chat.completion", "created": 0, "model": name,
                     "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                     "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}})

note(environment_key=os.environ.get("OPENAI_API_KEY"), environment_has_key="OPENAI_API_KEY" in os.environ)
ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""


def test_a_local_student_gets_neither_the_real_key_nor_its_variable(models, tmp_path, monkeypatch):
    from skillmix.llm.client import LLMClient
    from skillmix.llm.roles import ResolvedModel
    from skillmix.pipelines.config import DatasetConfig
    from skillmix.pipelines.dataset import make_llm

    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    monkeypatch.delenv(local.API_KEY_ENV, raising=False)
    record = tmp_path / "seen.jsonl"
    student = LocalStudent(str(models["templated"]), log_path=tmp_path / "student.log", engine="transformers")

    def argv() -> list[str]:
        return [sys.executable, "-c", RECORDING_SERVER, str(student.port), student.model_name, str(record)]

    monkeypatch.setattr(student, "argv", argv)
    with student:
        # the process, as the operating system sees it
        environ = Path(f"/proc/{student.process.pid}/environ").read_bytes().split(b"\0")
        assert not any(entry.startswith(b"OPENAI_API_KEY=") for entry in environ)
        # the client a run's pipeline makes for the served student (skillmix.evaluation.roles.Student.serve)
        served = ResolvedModel("student", student.model_name, student.base_url, student.identity,
                               priced=False, where=student.engine)  # fmt: skip
        assert served.local and served.api_key_env == local.API_KEY_ENV
        llm = make_llm(DatasetConfig(), served, tmp_path, 1, "round1", "run")
        llm.load()
        reply = asyncio.run(llm.agenerate(QUESTION, max_new_tokens=5))
        assert "A calm report." in reply["generations"][0]
        # and the client of the student's own endpoint
        done = asyncio.run(
            LLMClient(student.endpoint()).complete(QUESTION, temperature=0, max_tokens=5, seed=1)
        )
        assert done.status == "ok"
    seen = [json.loads(line) for line in record.read_text().splitlines()]
    assert seen[0] == {"environment_key": None, "environment_has_key": False}
    headers = [entry["authorization"] for entry in seen[1:]]
    assert len(headers) == 2 and all(h and "sk-secret" not in h for h in headers), headers
    # an API model keeps the real key
    assert ResolvedModel("judge", "gpt-4o", None).api_key_env == "OPENAI_API_KEY"


# ------------------------------------------------------------------ identity and engine


def test_the_identity_follows_the_files_not_the_engine(models, tmp_path):
    folder = tmp_path / "student"
    shutil.copytree(models["templated"], folder)

    def identity(**options) -> str:
        return LocalStudent(str(folder), **options).identity

    first = identity(engine="transformers")
    assert first == identity(engine="transformers") == identity(engine="vllm")
    assert first.startswith(f"hf-student|{folder.resolve()}@local|")
    weights = folder / "model.safetensors"
    stat = weights.stat()
    weights.write_bytes(weights.read_bytes())  # retrained into the same folder: same size, new time
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    retrained = identity()
    assert retrained != first and retrained == identity()
    assert identity(chat_template=models["template"]) != retrained
    config = folder / "config.json"
    config.write_text(config.read_text().replace('"use_cache": true', '"use_cache": false'))
    assert identity() != retrained


def test_the_argv_of_vllm(models):
    student = LocalStudent(str(models["bare"]), chat_template=models["template"], engine="vllm")
    student.check()
    student.port = 8123
    argv = student.argv()
    assert Path(argv[0]).name == "vllm" and argv[1:3] == ["serve", str(models["bare"].resolve())]
    options = dict(zip(argv[3::2], argv[4::2], strict=True))
    assert options == {"--host": "127.0.0.1", "--port": "8123", "--served-model-name": "bare",
                       "--dtype": "auto", "--chat-template": str(models["template"].resolve())}  # fmt: skip


@pytest.mark.parametrize(("has_vllm", "cuda", "engine"), [
    (True, True, "vllm"), (True, False, "transformers"), (False, True, "transformers"),
    (False, False, "transformers"),
])  # fmt: skip
def test_vllm_is_chosen_only_with_vllm_and_a_gpu(monkeypatch, has_vllm, cuda, engine):
    monkeypatch.setattr(local, "_find_spec", lambda name: object() if has_vllm and name == "vllm" else None)
    monkeypatch.setattr(local, "_cuda_available", lambda: cuda)
    assert choose_engine() == engine
