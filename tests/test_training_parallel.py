"""The pieces of the multi-process and multi-GPU paths that run without them: the parameter count under
ZeRO-3, the precision rule (fp32 master weights), the checkpoint pusher (what it uploads, and that rank 0
does not wait for the upload inside the step loop), and the streamed plain-text mix."""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from skillmix.config import ConfigError
from skillmix.training.config import ModelConfig, PlainText, TinyModel
from skillmix.training.models import check_precision, parameter_count


def test_parameter_count_under_zero3_uses_ds_numel():
    import torch

    full = torch.nn.Parameter(torch.zeros(3, 4))
    shard = torch.nn.Parameter(torch.zeros(0))  # what a rank holds of a ZeRO-3 partitioned parameter
    shard.ds_numel = 1_000_000
    model = SimpleNamespace(parameters=lambda: iter([full, shard]))
    assert parameter_count(model) == 12 + 1_000_000


def test_weights_are_kept_in_float32_unless_deepspeed_keeps_the_masters(monkeypatch):
    monkeypatch.delenv("ACCELERATE_USE_DEEPSPEED", raising=False)
    check_precision(ModelConfig(name_or_path="org/model", dtype="float32"))
    check_precision(ModelConfig(name_or_path="tiny", dtype="bfloat16", tiny=TinyModel()))  # built in fp32
    for dtype in ("bfloat16", "float16", "auto"):
        with pytest.raises(ConfigError, match=f"model.dtype: {dtype} would train the weights themselves"):
            check_precision(ModelConfig(name_or_path="org/model", dtype=dtype))
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    check_precision(ModelConfig(name_or_path="org/model", dtype="bfloat16"))


def checkpoint(folder: Path) -> Path:
    names = ["model.safetensors", "config.json", "generation_config.json", "tokenizer.json",
             "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja", "optimizer.pt",
             "optimizer.bin", "scheduler.pt", "rng_state_1.pth", "training_args.bin",
             "trainer_state.json"]  # fmt: skip
    folder.mkdir(parents=True)
    for name in names:
        (folder / name).write_text(name)
    (folder / "pytorch_model_fsdp_0").mkdir()
    (folder / "pytorch_model_fsdp_0" / "__0_0.distcp").write_text("shard")
    return folder


def test_the_checkpoint_pusher_uploads_weights_only_and_does_not_block_the_step(tmp_path, monkeypatch):
    from skillmix.training import hub

    release, started, uploaded = threading.Event(), threading.Event(), []

    def fake_push(folder, repo_id, branch, token, private):
        started.set()
        assert release.wait(30)
        uploaded.append((folder.name, sorted(p.name for p in folder.iterdir())))
        return "0123456789abcdef"

    monkeypatch.setattr(hub, "push_checkpoint", fake_push)
    lines: list[str] = []
    pusher = hub.checkpoint_pusher("org/model", "checkpoints", "hf_x", False, lines.append)
    checkpoint(tmp_path / "checkpoint-2")
    args, state = (
        SimpleNamespace(output_dir=str(tmp_path)),
        SimpleNamespace(is_world_process_zero=True, global_step=2),
    )
    pusher.on_save(args, state, None)  # returns while the upload is still waiting
    assert started.wait(30) and not uploaded
    import shutil

    shutil.rmtree(tmp_path / "checkpoint-2")  # save_total_limit may rotate it out while it uploads
    release.set()
    pusher.wait()
    assert uploaded == [("checkpoint-2", ["chat_template.jinja", "config.json", "generation_config.json",
                                          "model.safetensors", "special_tokens_map.json", "tokenizer.json",
                                          "tokenizer_config.json"])]  # fmt: skip
    assert lines == ["pushed checkpoint-2 to org/model@checkpoints (commit 0123456789)"]
    assert not (tmp_path / hub.PUSH_STAGING / "checkpoint-2").exists()
    other = SimpleNamespace(is_world_process_zero=False, global_step=4)
    checkpoint(tmp_path / "checkpoint-4")
    pusher.on_save(args, other, None)  # another rank never pushes
    pusher.wait()
    assert len(uploaded) == 1


def test_the_checkpoint_branch_upload_is_an_allow_list():
    from skillmix.training.hub import CHECKPOINT_FILES

    assert "*.safetensors" in CHECKPOINT_FILES and not any(
        "optimizer" in p or p == "*" for p in CHECKPOINT_FILES
    )


def test_the_plain_text_mix_is_streamed(tmp_path):
    from datasets import IterableDataset

    from skillmix.training.data import _load_text_dataset, load_plain_text

    texts = tmp_path / "plain.jsonl"
    texts.write_text("".join(f'{{"text": "text {i}"}}\n' for i in range(50)) + '{"text": ""}\n')
    spec = PlainText(path=str(texts), ratio=1.0)
    assert isinstance(_load_text_dataset(spec), IterableDataset)  # never materialised whole
    drawn = load_plain_text(spec, 10, seed=3, log=lambda m: None)
    assert len(drawn) == len(set(drawn)) == 10 and drawn == load_plain_text(spec, 10, 3, lambda m: None)
    assert drawn != load_plain_text(spec, 10, 4, lambda m: None)  # seeded
    notes: list[str] = []
    assert len(load_plain_text(spec, 80, 3, notes.append)) == 50 and "fewer than the 80" in notes[0]
    bad = PlainText(path=str(texts), ratio=1.0, text_field="body")
    with pytest.raises(ConfigError, match="has no column 'body'"):
        load_plain_text(bad, 5, 0, lambda m: None)
