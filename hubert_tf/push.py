"""`push_to_hub` for models, processors, tokenizers and feature extractors: `save_pretrained` into a temporary
directory, then one commit of its files through huggingface_hub's `HfApi` (imported only here, on use)."""

from __future__ import annotations

import os
import tempfile
from typing import Any


def files_of(folder: str) -> list[tuple[str, str]]:
    """[(path in the repo, local path)] of every file under `folder`, sorted, "/"-separated."""
    out = []
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            out.append((os.path.relpath(path, folder).replace(os.sep, "/"), path))
    return sorted(out)


def push_to_hub(obj: Any, repo_id: str, *, commit_message: str | None = None, commit_description: str | None = None,
                private: bool | None = None, token: str | bool | None = None, revision: str | None = None,
                create_pr: bool = False, max_shard_size: int | str | None = None):
    """Uploads what `obj.save_pretrained` writes to the hub repo `repo_id`, in one commit, as transformers'
    `push_to_hub` does.

    The repo is created if missing (`private` applies then), the branch `revision` too; the commit adds
    every file of `save_pretrained` (a model: `config.json` and `model.safetensors` or its shards; a
    processor: `preprocessor_config.json`, `vocab.json`, `tokenizer_config.json`,
    `special_tokens_map.json`, and `language_model/` for a processor with an LM).

    Args:
        obj: a model, processor, tokenizer or feature extractor (anything with `save_pretrained(dir)`).
        repo_id: "name" or "org/name".
        commit_message: defaults to "Upload <class name>".
        commit_description: the commit's longer description.
        private: make a newly created repo private.
        token: hub token (defaults to the saved login).
        revision: the branch to commit to (created from the default branch if missing).
        create_pr: open a pull request instead of committing to the branch.
        max_shard_size: models only: shard the weights above this size ("500MB").

    Returns:
        huggingface_hub's `CommitInfo` (`commit_url`, `oid`, `pr_url`).

    Raises:
        ValueError: `repo_id` is not a hub repo id; TypeError: `obj` has no `save_pretrained`.
        OSError: one line when the hub cannot be reached (within about a second), or refuses the upload.

    Example:

    >>> model.push_to_hub("me/hubert-tiny-ctc", commit_message="tiny CTC model")  # doctest: +SKIP
    >>> processor.push_to_hub("me/hubert-tiny-ctc")  # doctest: +SKIP
    """
    from .hub import hub_unreachable, is_repo_id

    if not isinstance(repo_id, str) or not is_repo_id(repo_id):
        raise ValueError(f"push_to_hub: {repo_id!r} is not a hub repo id ('name' or 'org/name')")
    if not callable(getattr(obj, "save_pretrained", None)):
        raise TypeError(f"push_to_hub: {type(obj).__name__} has no save_pretrained")
    reason = hub_unreachable()
    if reason is not None:
        raise OSError(f"push_to_hub({repo_id}): the hub cannot be reached ({reason})")
    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi(token=token)
    with tempfile.TemporaryDirectory(prefix="hubert_tf_push_") as folder:
        if max_shard_size is not None:
            obj.save_pretrained(folder, max_shard_size=max_shard_size)
        else:
            obj.save_pretrained(folder)
        operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=path) for name, path in files_of(folder)]
        if not operations:
            raise ValueError(f"push_to_hub: {type(obj).__name__}.save_pretrained wrote no file")
        try:
            repo_id = api.create_repo(repo_id, private=private, exist_ok=True, token=token).repo_id
            if revision is not None and not create_pr and not revision.startswith("refs/pr/"):
                api.create_branch(repo_id, branch=revision, exist_ok=True, token=token)
            return api.create_commit(
                repo_id, operations, commit_message=commit_message or f"Upload {type(obj).__name__}",
                commit_description=commit_description, token=token, revision=revision, create_pr=create_pr,
            )
        except HfHubHTTPError as error:
            first = str(error).strip().splitlines()
            raise OSError(f"push_to_hub({repo_id}): {first[0] if first else type(error).__name__}") from None
