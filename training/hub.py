"""Pushing a fine-tuned student to the Hub: the final checkpoint with its card on ``main``, and optionally
every intermediate checkpoint to a branch as it is saved.

The token comes from ``HF_TOKEN`` or the Hub login (``hf auth login``) only; it is passed to the client in
memory and never printed, logged or written (TRL's own ``push_to_hub`` is never turned on, so the
``training_args.bin`` it saves holds no token). Access is checked before the first training step, so a
missing or wrong token stops the run before hours are spent.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from skillmix.config import ConfigError
from skillmix.training.card import read_front_matter

# Optimizer and scheduler states, RNG states and pickled arguments stay local: the Hub gets the model.
UPLOAD_IGNORE_PATTERNS = ["checkpoint-*", "checkpoint-*/**", "*.pt", "*.pth", "training_args.bin"]


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


def push_checkpoint(folder: Path, repo_id: str, branch: str, token: str, private: bool) -> str:
    """Upload one ``checkpoint-N`` folder (model files only) as the new head of ``branch``."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    api.create_branch(repo_id, branch=branch, exist_ok=True)
    commit = api.upload_folder(
        folder_path=str(folder),
        repo_id=repo_id,
        revision=branch,
        commit_message=f"{folder.name}",
        ignore_patterns=["*.pt", "*.pth", "training_args.bin", "rng_state*"],
    )
    return commit.oid


def checkpoint_pusher(
    repo_id: str, branch: str, token: str, private: bool, log: Callable[[str], None]
) -> Any:
    """A ``TrainerCallback`` that pushes each checkpoint to ``branch`` once the trainer has saved it."""
    from transformers import TrainerCallback

    class CheckpointPusher(TrainerCallback):
        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if not state.is_world_process_zero:
                return
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if folder.is_dir():
                oid = push_checkpoint(folder, repo_id, branch, token, private)
                log(f"pushed {folder.name} to {repo_id}@{branch} (commit {oid[:10]})")

    return CheckpointPusher()
