"""Where `from_pretrained` finds its files, and which keywords it takes.

- `resolve_file`: a file of a local directory or of a Hugging Face hub repo (through huggingface_hub's
  cache). Path-like names that are not directories fail at once ("no such directory: ..."), without
  importing huggingface_hub; hub ids fail in about a second with one line when the hub cannot be
  reached (see `hub_unreachable`).
- `LOADING_OPTIONS` / `split_loading_options` / `check_keywords`: the one table of the keywords
  transformers' `from_pretrained` takes besides config fields, shared by models, configs and processors.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
import threading
import time
from typing import Any, Iterable, Mapping

logger = logging.getLogger("hubert_tf")

# ------------------------------------------------------------------------------------------ options

# Every keyword transformers' `from_pretrained` (models, configs, processors) takes besides config
# fields, and what it does here:
#   "hub":     passed to `resolve_file` (huggingface_hub's download options);
#   "loader":  handled by the caller that declares it (`split_loading_options(..., handled=...)`); for any
#              other caller it is accepted and has no effect (a config ignores `output_loading_info`);
#   "ignored": meaningless for a TensorFlow model (torch placement, torch formats, remote code): accepted,
#              no effect (weights in any format load anyway, so `from_pt`/`from_tf` need no switch);
#   "refused": asks for something this package cannot do: ValueError rather than a silently different
#              model.
# No keyword of this table ever becomes a config field.
LOADING_OPTIONS: dict[str, str] = {
    # huggingface_hub
    "revision": "hub", "cache_dir": "hub", "force_download": "hub", "local_files_only": "hub",
    "token": "hub", "subfolder": "hub",
    "use_auth_token": "hub",  # transformers' old name of `token`
    "proxies": "ignored",  # huggingface_hub >= 1 takes proxies from HTTP(S)_PROXY, not per call
    "resume_download": "ignored",  # downloads always resume
    "user_agent": "ignored", "mirror": "ignored", "_commit_hash": "ignored",
    # models
    "config": "loader", "output_loading_info": "loader", "ignore_mismatched_sizes": "loader",
    "dtype": "loader", "torch_dtype": "loader", "use_safetensors": "loader", "variant": "loader",
    "state_dict": "loader", "target_lang": "loader",
    "from_pt": "ignored", "from_tf": "ignored", "from_flax": "ignored", "trust_remote_code": "ignored",
    "low_cpu_mem_usage": "ignored", "device_map": "ignored", "max_memory": "ignored",
    "offload_folder": "ignored", "offload_state_dict": "ignored", "offload_buffers": "ignored",
    "attn_implementation": "ignored", "experts_implementation": "ignored", "weights_only": "ignored",
    "disable_mmap": "ignored", "fusion_config": "ignored", "tp_plan": "ignored", "tp_size": "ignored",
    "device_mesh": "ignored", "distributed_config": "ignored", "key_mapping": "ignored",
    "adapter_kwargs": "ignored", "adapter_name": "ignored", "use_kernels": "ignored",
    "kernel_config": "ignored", "allow_all_kernels": "ignored", "tqdm_class": "ignored",
    "generation_config": "ignored", "_fast_init": "ignored", "_from_auto": "ignored",
    "_from_pipeline": "ignored",
    # configs, processors
    "return_unused_kwargs": "loader", "_configuration_file": "ignored", "use_fast": "ignored",
    # not supported: a different model would load
    "quantization_config": "refused", "gguf_file": "refused",
}
HUB_OPTIONS = tuple(name for name, kind in LOADING_OPTIONS.items() if kind == "hub")

# Attributes every transformers config has (`PretrainedConfig.__init__`): accepted as config overrides,
# as transformers does, though only the model-type fields change the layers.
GENERIC_CONFIG_KEYS = frozenset({
    "output_hidden_states", "output_attentions", "return_dict", "architectures", "problem_type",
    "bos_token_id", "eos_token_id", "sep_token_id", "decoder_start_token_id", "tie_word_embeddings",
    "is_encoder_decoder", "is_decoder", "finetuning_task", "tokenizer_class", "prefix",
    "task_specific_params", "chunk_size_feed_forward", "torchscript", "transformers_version",
})


def split_loading_options(kwargs: Mapping[str, Any], *, handled: Iterable[str] = (),
                          owner: str = "from_pretrained") -> tuple[dict, dict, dict]:
    """Splits `from_pretrained` keywords into (hub options, the caller's own options, the rest).

    Args:
        kwargs: the keywords given.
        handled: the "loader" options the caller implements (e.g. `output_loading_info`).
        owner: named in messages ("TFHubertForCTC.from_pretrained").

    Returns:
        (hub: keywords for `resolve_file`, `use_auth_token` renamed `token`; own: the `handled` ones;
        rest: keywords not in `LOADING_OPTIONS`, for the caller to take as fields or refuse with
        `check_keywords`). Ignored options are dropped (logged at debug level).

    Raises:
        ValueError: a "refused" option (`quantization_config`, `gguf_file`) with a value.

    Example:

    >>> split_loading_options({"revision": "v2", "from_pt": True, "vocab_size": 40})
    ({'revision': 'v2'}, {}, {'vocab_size': 40})
    """
    handled = set(handled)
    hub, own, rest = {}, {}, {}
    for name, value in kwargs.items():
        kind = LOADING_OPTIONS.get(name)
        if kind is None:
            rest[name] = value
        elif name in handled:
            own[name] = value
        elif kind == "hub":
            if name == "use_auth_token":
                if value is not None and kwargs.get("token") is None:
                    hub["token"] = value
            else:
                hub[name] = value
        elif kind == "refused" and value is not None:
            raise ValueError(f"{owner}: {name}= is not supported by hubert_tf (it loads float safetensors / "
                             "torch / TF checkpoints only)")
        else:
            logger.debug("%s: %s=%r has no effect in hubert_tf; ignored", owner, name, value)
    return hub, own, rest


def check_keywords(given: Iterable[str], allowed: Iterable[str], *, owner: str, what: str = "field") -> None:
    """Raises TypeError naming every keyword of `given` not in `allowed`, with a did-you-mean.

    Args:
        given: the keywords left after `split_loading_options`.
        allowed: the names the caller takes (config fields, constructor arguments).
        owner: the function named in the message.
        what: what `allowed` holds ("config field"), for the message.

    Example:

    >>> check_keywords(["mask_time_porb"], ["mask_time_prob"], owner="from_pretrained")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    TypeError: from_pretrained got an unexpected keyword argument 'mask_time_porb' (...); did you mean mask_time_prob?
    """
    allowed = set(allowed)
    unknown = [name for name in given if name not in allowed]
    if not unknown:
        return
    candidates = sorted(allowed | set(LOADING_OPTIONS))
    hints = [difflib.get_close_matches(name, candidates, n=1, cutoff=0.7) for name in unknown]
    note = f"(not a {what} nor a loading option)"
    if len(unknown) == 1:
        raise TypeError(f"{owner} got an unexpected keyword argument {unknown[0]!r} {note}"
                        + (f"; did you mean {hints[0][0]}?" if hints[0] else ""))
    named = ", ".join(f"{name!r}" + (f" (did you mean {hint[0]}?)" if hint else "")
                      for name, hint in zip(unknown, hints))
    raise TypeError(f"{owner} got unexpected keyword arguments {named} (not {what}s nor loading options)")


def parameter_names(function, skip: Iterable[str] = ()) -> set[str]:
    """The keyword-passable parameter names of `function` (a class: its `__init__`), without `self`,
    `*args`, `**kwargs` and `skip`: what a `from_pretrained` may pass on as overrides.

    Example:

    >>> sorted(parameter_names(lambda vocab, unk_token="<unk>", **kw: None, skip=("vocab",)))
    ['unk_token']
    """
    import inspect

    target = function.__init__ if isinstance(function, type) else function
    return {name for name, p in inspect.signature(target).parameters.items()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and name != "self" and name not in set(skip)}


# ------------------------------------------------------------------------------------------ local or hub

# A hub repo id: "name" or "namespace/name" (huggingface_hub's rule: ASCII word characters, "-", ".").
_REPO_ID = re.compile(r"^(?:[A-Za-z0-9_][A-Za-z0-9_.-]{0,95}/)?[A-Za-z0-9_][A-Za-z0-9_.-]{0,95}$")


def is_repo_id(name: str) -> bool:
    """Whether `name` is a valid hub repo id ("org/name" or "name"; no "--", "..", ".git" end).

    Example:

    >>> is_repo_id("facebook/hubert-base-ls960"), is_repo_id("./x"), is_repo_id("a/b/c")
    (True, False, False)
    """
    return (bool(_REPO_ID.match(name)) and "--" not in name and ".." not in name
            and not name.endswith((".git", "-", ".")) and not re.search(r"[.-]/", name))


def _looks_like_path(name: str) -> bool:
    """A name a user meant as a path: "./x", "/x", "~/x", "x\\y", "C:x", a separator other than one "/",
    or "dir/name" where `dir` is an existing local directory (a mistyped path, not an organisation)."""
    if name.startswith((".", "/", "~")) or "\\" in name or re.match(r"^[A-Za-z]:", name):
        return True
    for sep in {os.sep, os.altsep} - {None, "/"}:
        if sep in name:
            return True
    head, sep, _ = name.partition("/")
    return bool(sep) and os.path.isdir(head)


def locate(name_or_path: str | os.PathLike, subfolder: str | None = None) -> tuple[str, bool]:
    """(the directory or repo id, whether it is local) for `name_or_path`, checked without the network.

    Args:
        name_or_path: a local directory (`~` expanded) or a hub repo id. A `os.PathLike` (not a str) is
            always a path.
        subfolder: a folder inside it (joined for a local directory).

    Raises:
        OSError: "no such directory: <path>" for a path-like name that is not a directory (including a
            file, and names that cannot be hub repo ids).

    Example:

    >>> locate("facebook/hubert-base-ls960")
    ('facebook/hubert-base-ls960', False)
    """
    given = os.fspath(name_or_path)
    if not isinstance(given, str):
        given = os.fsdecode(given)
    path = os.path.expanduser(given)
    if os.path.isdir(path):
        if subfolder:
            path = os.path.join(path, subfolder)
            if not os.path.isdir(path):
                raise OSError(f"no such directory: {path} (subfolder={subfolder!r} of {given})")
        return path, True
    if os.path.exists(path):
        raise OSError(f"no such directory: {given} (it is a file; pass the directory that holds it)")
    if not isinstance(name_or_path, str) or not is_repo_id(given) or _looks_like_path(given):
        raise OSError(f"no such directory: {given}")
    return given, False


def is_local(name_or_path: str | os.PathLike) -> bool:
    """Whether `name_or_path` is an existing local directory."""
    return os.path.isdir(os.path.expanduser(os.fspath(name_or_path)))


# ------------------------------------------------------------------------------------------ reachability

# Seconds the reachability probe waits for the hub (connect + first byte). huggingface_hub's own
# timeouts (10 s per request, then 60 s with 5 retries when nothing is cached) make an offline machine
# wait ~27 s per file; the probe answers once per endpoint and minute instead. `HF_HUB_ETAG_TIMEOUT`,
# when set, is the user's choice and wins.
PROBE_TIMEOUT = 1.0
PROBE_TTL = 60.0
_probes: dict[str, tuple[float, str | None]] = {}
_probe_lock = threading.Lock()


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def hub_offline() -> bool:
    """Whether `HF_HUB_OFFLINE` (or `TRANSFORMERS_OFFLINE`) is set now (huggingface_hub reads it only at
    its import)."""
    return _env_true("HF_HUB_OFFLINE") or _env_true("TRANSFORMERS_OFFLINE")


def probe_timeout() -> float:
    """The probe's timeout in seconds: `HF_HUB_ETAG_TIMEOUT` if set, else `PROBE_TIMEOUT`."""
    try:
        return float(os.environ["HF_HUB_ETAG_TIMEOUT"])
    except (KeyError, ValueError):
        return PROBE_TIMEOUT


def hub_unreachable(endpoint: str | None = None) -> str | None:
    """Why the hub cannot be reached ("ConnectError: ..."), or None when it answers (any HTTP status).

    One HEAD request to the endpoint's root through huggingface_hub's session (its proxies and
    certificates), bounded by `probe_timeout()`, no retry; the answer is kept for `PROBE_TTL` seconds.

    Args:
        endpoint: the hub URL; defaults to huggingface_hub's (`HF_ENDPOINT`).
    """
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    endpoint = (endpoint or constants.ENDPOINT).rstrip("/")
    now = time.monotonic()
    with _probe_lock:
        cached = _probes.get(endpoint)
        if cached is not None and now - cached[0] < PROBE_TTL:
            return cached[1]
        try:
            get_session().head(endpoint + "/", timeout=probe_timeout(), follow_redirects=False)
            reason = None
        except Exception as error:  # any transport failure (refused, DNS, TLS, timeout) means "unreachable"
            first = str(error).strip().splitlines()
            reason = f"{type(error).__name__}: {first[0] if first else 'no answer'}"
            reason = f"{endpoint} does not answer: {reason}"
        _probes[endpoint] = (now, reason)
        return reason


def _repo_cached(repo_id: str, cache_dir) -> bool:
    """Whether huggingface_hub's cache holds anything of the model repo `repo_id`."""
    from huggingface_hub import constants
    from huggingface_hub.file_download import repo_folder_name

    root = os.fspath(cache_dir) if cache_dir is not None else constants.HF_HUB_CACHE
    return os.path.isdir(os.path.join(root, repo_folder_name(repo_id=repo_id, repo_type="model"), "snapshots"))


# ------------------------------------------------------------------------------------------ files


def resolve_file(
    name_or_path: str | os.PathLike,
    filename: str,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
    subfolder: str | None = None,
    force_download: bool = False,
    required: bool = True,
) -> str | None:
    """Returns the local path of `filename` in a directory or hub repo.

    Args:
        name_or_path: a local directory or a hub repo id ("facebook/hubert-base-ls960").
        filename: the file within it ("config.json", "language_model/attrs.json").
        revision, cache_dir, local_files_only, token, subfolder, force_download: as in
            `huggingface_hub.hf_hub_download` (`subfolder` also applies to a local directory).
            `HF_HUB_OFFLINE=1` (read at each call) means `local_files_only`.
        required: raise OSError when the file is missing (otherwise return None).

    Raises:
        OSError: one line: "no such directory: <path>" for a path-like name (at once, no network); the
            file is missing; the repo does not exist (or is private/gated); the hub cannot be reached
            (within about `probe_timeout()`) and the repo is not in the local cache.

    Example:

    >>> resolve_file("tests/fixtures/base_style", "config.json")  # doctest: +SKIP
    'tests/fixtures/base_style/config.json'
    """
    where, local = locate(name_or_path, subfolder)
    if local:
        path = os.path.join(where, filename)
        if os.path.isdir(path):
            raise OSError(f"{path} is a directory, expected a file")
        if os.path.isfile(path):
            return path
        if required:
            raise OSError(f"{filename} not found in directory {where}")
        return None
    return _hub_file(where, filename, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only,
                     token=token, subfolder=subfolder or None, force_download=force_download, required=required)


def _hub_file(repo_id, filename, *, revision, cache_dir, local_files_only, token, subfolder, force_download,
              required):
    import huggingface_hub
    from huggingface_hub.errors import (EntryNotFoundError, GatedRepoError, HfHubHTTPError,
                                        LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError)

    shown = f"{subfolder}/{filename}" if subfolder else filename
    offline = None
    if hub_offline():
        offline = "HF_HUB_OFFLINE is set"
    elif local_files_only:
        offline = "local_files_only=True"
    else:
        offline = hub_unreachable()
    if offline is not None:
        if force_download:
            raise OSError(f"{repo_id}: cannot force_download {shown}: {offline}")
        if not _repo_cached(repo_id, cache_dir):
            raise OSError(f"{repo_id} is not a local directory and not in the local hub cache, and the hub "
                          f"cannot be used ({offline}); download it once with network access, or pass a "
                          "local directory")
    try:
        return huggingface_hub.hf_hub_download(
            repo_id, filename, subfolder=subfolder, revision=revision, cache_dir=cache_dir,
            local_files_only=offline is not None, token=token, force_download=force_download,
            library_name="hubert_tf",
        )
    except LocalEntryNotFoundError:
        if required:
            raise OSError(f"{shown} of {repo_id} is not in the local hub cache and the hub cannot be used "
                          f"({offline or 'no answer'}); download it once with network access, or pass a "
                          "local directory") from None
        return None
    except EntryNotFoundError:
        if required:
            raise OSError(f"{shown} not found in hub repo {repo_id}"
                          + (f" at revision {revision}" if revision else "")) from None
        return None
    except GatedRepoError:
        raise OSError(f"{repo_id} is a gated hub repo: accept its conditions on the hub and pass token= "
                      "(or log in with `hf auth login`)") from None
    except RepositoryNotFoundError:
        raise OSError(f"no such directory or hub repo: {repo_id} (if it is private, pass token=)") from None
    except RevisionNotFoundError:
        raise OSError(f"{repo_id} has no revision {revision!r}") from None
    except HfHubHTTPError as error:
        first = str(error).strip().splitlines()
        raise OSError(f"{repo_id}: the hub failed to give {shown}: {first[0] if first else type(error).__name__}") \
            from None
