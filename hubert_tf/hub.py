"""Find files in a local directory or a Hugging Face hub repo (through huggingface_hub's cache)."""

from __future__ import annotations

import os


def is_local(name_or_path: str) -> bool:
    return os.path.isdir(name_or_path)


def resolve_file(
    name_or_path: str | os.PathLike,
    filename: str,
    *,
    revision: str | None = None,
    cache_dir: str | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
    required: bool = True,
) -> str | None:
    """Returns the local path of `filename` in a directory or hub repo.

    Args:
        name_or_path: a local directory or a hub repo id ("facebook/hubert-base-ls960").
        filename: the file within it ("config.json").
        revision, cache_dir, local_files_only, token: as in `huggingface_hub.hf_hub_download`;
            `HF_HUB_OFFLINE=1` is honoured by huggingface_hub itself.
        required: raise OSError when the file is missing (otherwise return None).
    """
    name_or_path = os.fspath(name_or_path)
    if os.path.isdir(name_or_path):
        path = os.path.join(name_or_path, filename)
        if os.path.isdir(path):
            raise OSError(f"{path} is a directory, expected a file")
        if os.path.isfile(path):
            return path
        if required:
            raise OSError(f"{filename} not found in directory {name_or_path}")
        return None
    if os.path.exists(name_or_path):
        raise OSError(f"{name_or_path} is not a directory")
    if name_or_path.count("/") > 1 or name_or_path.startswith((".", "/")):
        raise OSError(f"{name_or_path} is neither an existing directory nor a hub repo id")
    import huggingface_hub

    # huggingface_hub reads HF_HUB_OFFLINE once, at its import; honour a value set later too.
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        local_files_only = True
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        return huggingface_hub.hf_hub_download(
            name_or_path, filename, revision=revision, cache_dir=cache_dir,
            local_files_only=local_files_only, token=token,
        )
    except LocalEntryNotFoundError:
        if required:
            raise OSError(
                f"{filename} of {name_or_path} is not in the local hub cache and the hub cannot be reached "
                "(offline, or HF_HUB_OFFLINE=1); download it once with network access, or pass a local directory"
            ) from None
        return None
    except EntryNotFoundError:
        if required:
            raise OSError(f"{filename} not found in hub repo {name_or_path}") from None
        return None
    except RepositoryNotFoundError:
        raise OSError(f"{name_or_path} is not a local directory and not a hub repo (or it is private: pass token=)") from None
