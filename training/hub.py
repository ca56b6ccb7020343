"""Pushing a fine-tuned student to the Hub: the final checkpoint with its card on ``main``, and optionally
every intermediate checkpoint to a branch as it is saved.

The token comes from ``HF_TOKEN`` or the Hub login (``hf auth login``) only; it is passed to the client in
memory and never printed, logged or written (TRL's own ``push_to_hub`` is never turned on, so the
``training_args.bin`` it saves holds no token). Access is checked before the first training step, so a
missing or wrong token stops the run before hours are spent.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from skillmix.config import ConfigError
from skillmix.training.card import read_front_matter

# Optimizer and scheduler states, RNG states and pickled arguments stay local: the Hub gets the model.
UPLOAD_IGNORE_PATTERNS = ["checkpoint-*", "checkpoint-*/**", "*.pt", "*.pth", "training_args.bin",
                          ".push-staging/**"]  # fmt: skip
PUSH_STAGING = ".push-staging"  # hard links of a checkpoint's files while they upload


def hub_token() -> str:
    """The token of the environment or the login; a :class:`ConfigError` when there is none."""
    from huggingface_hub import get_token

    token = get_token()
    if not token:
        raise ConfigError("--push-to-hub: no Hugging Face token; set HF_TOKEN or run `hf auth login`")
    return token


def check_access(repo_id: str, token: str) -> None:
    """The token is valid (whoami answers) and ``repo_id`` is an org/name; before any training step."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ConfigError(f"--push-to-hub: {repo_id!r} is not a repo id (org/name)")
    try:
        HfApi(token=token).whoami()
    except (HfHubHTTPError, OSError) as exc:
        raise ConfigError(f"--push-to-hub: the Hub refused the token: {str(exc).splitlines()[0]}") from None


def existing_metadata(repo_id: str, token: str) -> dict[str, Any]:
    """The YAML header of the repo's current card (for its ``model-index``), or ``{}``."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        path = hf_hub_download(repo_id, "README.md", token=token)
    except (EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError):
        return {}
    return read_front_matter(Path(path).read_text(encoding="utf-8"))


def push_final(folder: Path, repo_id: str, token: str, private: bool, message: str) -> str:
    """Upload the final model folder (card and loss curve included) to ``main``; the commit id."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    commit = api.upload_folder(
        folder_path=str(folder),
        repo_id=repo_id,
        commit_message=message,
        ignore_patterns=UPLOAD_IGNORE_PATTERNS,
    )
    return commit.oid


# What a checkpoint branch gets: the weights, the config and the tokenizer, so that any checkpoint can be
# loaded and evaluated; never the optimizer and scheduler states, RNG states, pickled arguments or FSDP /
# DeepSpeed shards (``optimizer.bin``, ``pytorch_model_fsdp_0/``, ``global_step*/``), which only resume.
CHECKPOINT_FILES = [
    "*.safetensors",
    "*.safetensors.index.json",
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.jinja",
    "vocab.json",
    "merges.txt",
]


def push_checkpoint(folder: Path, repo_id: str, branch: str, token: str, private: bool) -> str:
    """Upload one ``checkpoint-N`` folder (:data:`CHECKPOINT_FILES` only) as the new head of ``branch``."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    api.create_branch(repo_id, branch=branch, exist_ok=True)
    commit = api.upload_folder(
        folder_path=str(folder),
        repo_id=repo_id,
        revision=branch,
        commit_message=f"{folder.name}",
        allow_patterns=CHECKPOINT_FILES,
    )
    return commit.oid


def checkpoint_pusher(
    repo_id: str, branch: str, token: str, private: bool, log: Callable[[str], None]
) -> Any:
    """A ``TrainerCallback`` that pushes each checkpoint to ``branch`` once the trainer has saved it.

    Only rank 0 pushes, and in a thread of its own, one checkpoint at a time and in order: an upload
    inside ``on_save`` would hold rank 0 out of the next step's gradient all-reduce for as long as it
    takes, and every other rank waiting in it. The files to upload are hard-linked into
    ``<output>/.push-staging/checkpoint-N`` at once, so that ``save_total_limit`` may delete the checkpoint
    while it uploads. :meth:`wait` (called before the final push) waits for the uploads still under way; a
    failed upload is logged and the training goes on.
    """
    import queue
    import threading

    from transformers import TrainerCallback

    class CheckpointPusher(TrainerCallback):
        def __init__(self) -> None:
            self.pending: queue.Queue[Path | None] = queue.Queue()
            self.thread: threading.Thread | None = None

        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if not state.is_world_process_zero:
                return
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if not folder.is_dir():
                return
            folder = _stage(folder, Path(args.output_dir) / PUSH_STAGING)
            if self.thread is None:
                self.thread = threading.Thread(target=self._uploads, name="checkpoint-push", daemon=True)
                self.thread.start()
            self.pending.put(folder)

        def _uploads(self) -> None:
            while (folder := self.pending.get()) is not None:
                try:
                    oid = push_checkpoint(folder, repo_id, branch, token, private)
                except Exception as exc:  # a checkpoint upload never stops the training
                    log(f"could not push {folder.name} to {repo_id}@{branch}: {str(exc).splitlines()[0]}")
                    continue
                finally:
                    shutil.rmtree(folder, ignore_errors=True)
                log(f"pushed {folder.name} to {repo_id}@{branch} (commit {oid[:10]})")

        def wait(self) -> None:
            if self.thread is not None:
                self.pending.put(None)
                self.thread.join()
                self.thread = None

    return CheckpointPusher()


def _stage(folder: Path, staging: Path) -> Path:
    """Hard links (copies where linking fails) of ``folder``'s :data:`CHECKPOINT_FILES` in ``staging``."""
    import fnmatch
    import os

    target = staging / folder.name
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for path in folder.iterdir():
        if path.is_file() and any(fnmatch.fnmatch(path.name, pattern) for pattern in CHECKPOINT_FILES):
            try:
                os.link(path, target / path.name)
            except OSError:
                shutil.copy2(path, target / path.name)
    return target
