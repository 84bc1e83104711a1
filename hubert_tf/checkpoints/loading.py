"""`from_pretrained`: find the checkpoint files, plan them, check the plan against the model, read what it uses.

Loading never trusts a file's size claims before they are checked: every format is first *planned*
(names, dtypes, shapes, byte counts as `TensorRecord`s, from headers only), the plan is checked against
the model's weight table (shapes, dtypes, total bytes), and only then are the tensors the model uses
read, one at a time. Tensors the model does not use are listed as unused and never read or converted.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any, Mapping

import numpy as np

from ..configuration import HubertConfig, apply_overrides, load_config
from ..hub import is_local, locate, resolve_file, split_loading_options
from .formats.records import TensorRecord
from .names import candidate_keys, is_ignored, legacy_weight, reference_entries

logger = logging.getLogger("hubert_tf")

# Weight files in order of preference: the first one found wins.
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "tf_model.h5",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)

# Bytes read plus bytes converted (a float32 copy of every tensor not stored as float32) for the tensors
# the model uses may not exceed this multiple of the model's own size (plus a small floor for tiny
# models). Exact-shape matching already bounds a float64 checkpoint at 3x (2x read + 1x converted); the
# cap is the backstop for formats whose byte counts can exceed their shapes (views of larger storages).
MAX_BYTES_MULTIPLE = 4
MIN_BYTES_CAP = 1 << 20

# Stored dtypes a weight may have (converted exactly or rounded to the variable's dtype).
_FLOAT_NAMES = frozenset({"float16", "float32", "float64", "bfloat16", "float8_e4m3fn", "float8_e5m2"})


# ------------------------------------------------------------------------------------------ planning


def _plan_legacy_tf(path: str) -> dict[str, TensorRecord]:
    """`tf_model.h5` as records in the reference naming and layout (each weight through its table row)."""
    from .formats.legacy_h5 import plan_legacy_tf_h5

    records = {}
    for name, record in plan_legacy_tf_h5(path).items():
        try:
            weight = legacy_weight(name)
        except KeyError:
            raise ValueError(f"{path}: unknown weight {name!r} in the legacy TF checkpoint") from None
        records[weight.key] = TensorRecord(
            weight.key, record.dtype, weight.reference_shape(record.shape), record.nbytes, source=path,
            read=lambda record=record, weight=weight: weight.to_reference(record.read()),
        )
    return records


def plan_file(filename: str, path: str) -> dict[str, TensorRecord]:
    """Plans one weight file into {reference key: TensorRecord} in the reference layout; reads no tensor.

    Args:
        filename: the file's name in the checkpoint (its kind: `.safetensors`, `.bin`, `.h5`).
        path: its local path.

    Example:

    >>> records = plan_file("model.safetensors", "tests/fixtures/base_style/model.safetensors")  # doctest: +SKIP
    >>> records["lm_head.weight"].shape, records["lm_head.weight"].nbytes  # doctest: +SKIP
    ((12, 32), 1536)
    """
    if filename.endswith(".safetensors"):
        from .formats.safetensors import plan_safetensors

        return plan_safetensors(path)[1]
    if filename.endswith(".bin"):
        from .formats.torch_pickle import plan_torch_bin  # torch-free: the only .bin path

        return plan_torch_bin(path)
    if filename.endswith(".h5"):
        return _plan_legacy_tf(path)
    raise ValueError(f"unsupported weight file {filename}")


def weight_files(use_safetensors: bool | None = None, variant: str | None = None) -> tuple[str, ...]:
    """The weight file names to look for, in order, as transformers names them.

    Args:
        use_safetensors: True: safetensors files only; False: no safetensors files; None: all.
        variant: e.g. "fp16": `model.fp16.safetensors`, `model.safetensors.index.fp16.json`, ...
            (transformers' `_add_variant`: the variant goes before the last suffix).

    Example:

    >>> weight_files(use_safetensors=True, variant="fp16")
    ('model.fp16.safetensors', 'model.safetensors.index.fp16.json')
    """
    names = [n for n in WEIGHT_FILES if use_safetensors is None or (".safetensors" in n) == bool(use_safetensors)]
    if variant:
        if not isinstance(variant, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", variant):
            raise ValueError(f"variant must be a short name such as 'fp16' (letters, digits, '-', '_'), "
                             f"got {variant!r}")
        names = [".".join(n.split(".")[:-1] + [variant, n.split(".")[-1]]) for n in names]
    return tuple(names)


def find_weights(name_or_path: str, *, use_safetensors: bool | None = None, variant: str | None = None,
                 **hub_kwargs) -> tuple[str, str]:
    """Returns (kind, local path) of the first weight file found (see `weight_files`), kind being its file
    name."""
    names = weight_files(use_safetensors, variant)
    for filename in names:
        path = resolve_file(name_or_path, filename, required=False, **hub_kwargs)
        if path is not None:
            return filename, path
    where = name_or_path + (f"/{hub_kwargs['subfolder']}" if hub_kwargs.get("subfolder") else "")
    raise OSError(f"no weights found in {where}: looked for {', '.join(names)}")


def plan_checkpoint(name_or_path: str, *, use_safetensors: bool | None = None, variant: str | None = None,
                    **hub_kwargs) -> tuple[dict[str, TensorRecord], str]:
    """Plans the checkpoint at `name_or_path` (one file or every shard of an index); reads no tensor.

    Args:
        name_or_path: a local directory or a hub repo id.
        use_safetensors, variant: which weight files to look for (see `weight_files`).
        **hub_kwargs: revision, cache_dir, local_files_only, token, subfolder, force_download (see
            `hubert_tf.hub.resolve_file`).

    Returns:
        ({reference key: TensorRecord}, the weight file found). Shards must really (symlinks resolved)
        live inside the checkpoint directory; a key in two shards, or listed in the index but absent
        from its shard, is a ValueError.

    Example:

    >>> records, path = plan_checkpoint("tests/fixtures/checkpoint_formats/sharded_safetensors")  # doctest: +SKIP
    >>> os.path.basename(path), len(records) > 0  # doctest: +SKIP
    ('model.safetensors.index.json', True)
    """
    kind, path = find_weights(name_or_path, use_safetensors=use_safetensors, variant=variant, **hub_kwargs)
    if not kind.endswith(".json"):
        return plan_file(kind, path), path
    from .formats.sharding import checkpoint_root, read_index, require_inside

    weight_map, _ = read_index(path, check_files=is_local(name_or_path))
    directory = os.path.dirname(os.path.abspath(path))
    subfolder = hub_kwargs.get("subfolder")
    if subfolder and not is_local(name_or_path):  # a hub snapshot: <repo>/snapshots/<rev>/<subfolder>/
        directory = os.path.join(directory, *[".."] * len([p for p in re.split(r"[\\/]", subfolder) if p]))
    root = checkpoint_root(os.path.normpath(directory))
    records: dict[str, TensorRecord] = {}
    for shard in sorted(set(weight_map.values())):
        shard_path = resolve_file(name_or_path, shard, **hub_kwargs)
        require_inside(shard_path, root, path)
        for key, record in plan_file(shard, shard_path).items():
            if key in records:
                raise ValueError(f"{shard_path}: tensor {key} is also in {records[key].source}")
            records[key] = record
    missing = sorted(k for k in weight_map if k not in records)
    if missing:
        raise ValueError(f"{path}: keys listed in the index are missing from their shards: {missing[:5]}")
    return records, path


def read_state_dict(name_or_path: str, **hub_kwargs) -> tuple[dict[str, Any], str]:
    """Reads the checkpoint at `name_or_path` into {reference key: array}; returns it and the file read.

    Reads every tensor; loading into a model (`load_state_dict_into` with `plan_checkpoint`'s records)
    reads only the ones the model uses.

    Example:

    >>> state, path = read_state_dict("tests/fixtures/base_style")  # doctest: +SKIP
    >>> state["lm_head.weight"].shape  # doctest: +SKIP
    (12, 32)
    """
    records, path = plan_checkpoint(name_or_path, **hub_kwargs)
    return {key: record.read() for key, record in records.items()}, path


# ------------------------------------------------------------------------------------------ checking


def _dtype_name(dtype) -> str:
    return dtype if isinstance(dtype, str) else np.dtype(dtype).name


def _check_dtype(source: str, key: str, dtype) -> None:
    name = _dtype_name(dtype)
    if name not in _FLOAT_NAMES:
        raise ValueError(f"{source}: weight {key} has dtype {name}; weights must be floating point "
                         "(complex, bool and integer weights are refused)")


def _cast(source: str, key: str, value: np.ndarray, dtype) -> np.ndarray:
    """`value` as `dtype`, refusing finite values the cast would turn into inf (e.g. float64 beyond
    float32's range) instead of loading a model that outputs inf/NaN."""
    if value.dtype == dtype:
        return value
    with np.errstate(over="ignore", invalid="ignore"):
        cast = value.astype(dtype)
    if np.issubdtype(value.dtype, np.floating) and value.size:
        overflow = np.isinf(cast) & np.isfinite(value)
        if overflow.any():
            bad = float(np.abs(value[overflow]).max())
            raise ValueError(f"{source}: weight {key} holds {bad:.6g}, beyond the range of {np.dtype(dtype).name}")
    return cast


def _numpy_dtype(name):
    try:
        return np.dtype(name)
    except TypeError:  # bfloat16 / float8 variables: numpy knows them through ml_dtypes
        import ml_dtypes

        return np.dtype(getattr(ml_dtypes, str(name)))


def _as_record(key: str, value, source: str) -> TensorRecord:
    if isinstance(value, TensorRecord):
        return value
    array = value if isinstance(value, np.ndarray) else np.asarray(value)
    return TensorRecord(key, array.dtype, tuple(array.shape), int(array.nbytes), read=lambda: array, source=source)


def model_nbytes(model) -> int:
    """Bytes of the model's own weights."""
    return sum(int(np.prod(v.shape, dtype=np.int64)) * _numpy_dtype(v.dtype).itemsize for v in model.weights)


def load_state_dict_into(model, state: Mapping[str, Any], source: str = "checkpoint",
                         ignore_mismatched_sizes: bool = False) -> dict[str, list]:
    """Checks `state` against the model's weight table, then reads and assigns the weights it uses.

    Args:
        model: a TFHubert model (built).
        state: {reference key: TensorRecord or array}, e.g. from `plan_checkpoint` or `read_state_dict`.
        source: the checkpoint file, named in every message.
        ignore_mismatched_sizes: keep the fresh initialisation of weights whose shapes differ
            (else ValueError).

    Returns:
        {"missing": [...], "unused": [...], "unexpected": (the same list, transformers' name),
        "mismatched": [(key, ckpt shape, model shape)]}, and logs the warnings users know from
        transformers. Unused tensors are never read.

    Raises:
        ValueError: before any weight is assigned: a shape mismatch (naming the key and both shapes), a
            weight that is not floating point, more bytes than `MAX_BYTES_MULTIPLE` x the model's size;
            while reading: values beyond the variable dtype's range (the model is then partly loaded).

    Example:

    >>> records, path = plan_checkpoint("tests/fixtures/base_style")  # doctest: +SKIP
    >>> load_state_dict_into(model, records, source=path)["unused"]  # doctest: +SKIP
    []
    """
    records = {key: _as_record(key, value, source) for key, value in state.items()}
    used: set[str] = set()
    missing, mismatched, plan = [], [], []
    for entry in reference_entries(model):
        key = next((k for name in entry.keys for k in candidate_keys(name, entry.prefix) if k in records), None)
        if key is None:
            missing.append(entry.keys[0])
            continue
        used.add(key)
        record = records[key]
        wanted = entry.layout.reference_shape(tuple(entry.variable.shape))
        if tuple(record.shape) != wanted:
            if not ignore_mismatched_sizes:
                raise ValueError(
                    f"{source}: weight {key} has shape {tuple(record.shape)} in the checkpoint but the model "
                    f"expects {wanted}; pass ignore_mismatched_sizes=True to re-initialise it"
                )
            mismatched.append((key, tuple(record.shape), wanted))
            continue
        _check_dtype(source, key, record.dtype)
        plan.append((entry, key, record))

    cap = max(MAX_BYTES_MULTIPLE * model_nbytes(model), MIN_BYTES_CAP)
    total = sum(r.nbytes + (0 if _dtype_name(r.dtype) == "float32" else 4 * r.size) for _, _, r in plan)
    if total > cap:
        raise ValueError(f"{source}: the weights the model uses take {total} bytes to read and convert, more than "
                         f"{MAX_BYTES_MULTIPLE}x the model's own size ({cap} bytes); refusing")

    for entry, key, record in plan:
        value = np.asarray(record.read())
        if value.shape != tuple(record.shape):
            raise ValueError(f"{source}: weight {key} read as {value.shape}, its header said {tuple(record.shape)}")
        _check_dtype(source, key, value.dtype)
        value = _cast(source, key, entry.from_reference(value), _numpy_dtype(entry.variable.dtype))
        entry.variable.assign(value)

    unused = sorted(k for k in records if k not in used and not is_ignored(k))
    name = type(model).__name__
    if missing:
        logger.warning("Some weights of %s were not in %s and are newly initialized: %s\n"
                       "You should probably train this model on a downstream task.", name, source, missing)
    if unused:
        logger.warning("Some weights of %s were not used when initializing %s: %s", source, name, unused)
    if mismatched:
        logger.warning("Some weights of %s were re-initialized because their shapes differ from %s: %s",
                       name, source, [f"{k}: checkpoint {a} vs model {b}" for k, a, b in mismatched])
    return {"missing": missing, "unused": unused, "unexpected": unused, "mismatched": mismatched}


# The "loader" options of `hubert_tf.hub.LOADING_OPTIONS` a model's `from_pretrained` implements.
MODEL_OPTIONS = ("config", "output_loading_info", "ignore_mismatched_sizes", "dtype", "torch_dtype",
                 "use_safetensors", "variant", "state_dict", "target_lang")


def _model_dtype(dtype, torch_dtype):
    """The Keras dtype policy name from `dtype=` or transformers' `torch_dtype=`: None for None / "auto"
    (the global policy), a name as given, a dtype object (`torch.float16`, `np.float16`) by its name."""
    value = dtype if dtype is not None else torch_dtype
    if value is None or (isinstance(value, str) and value == "auto"):
        return None
    if isinstance(value, str):
        return value
    name = str(value)
    return name[len("torch."):] if name.startswith("torch.") else getattr(value, "name", name)


def loading_info(result: Mapping[str, list]) -> dict[str, Any]:
    """transformers' `output_loading_info` dict from `load_state_dict_into`'s result: sets of
    "missing_keys", "unexpected_keys", "mismatched_keys" ((key, checkpoint shape, model shape)), and
    "error_msgs" (always empty: an error raises instead)."""
    return {"missing_keys": set(result["missing"]), "unexpected_keys": set(result["unused"]),
            "mismatched_keys": {tuple(m) for m in result["mismatched"]}, "error_msgs": []}


def load_pretrained(cls, name_or_path, **kwargs):
    """The body of `TFHubertPreTrainedModel.from_pretrained` (see there for the keywords).

    Keywords are split by `hubert_tf.hub.split_loading_options`: hub options go to every file lookup,
    `MODEL_OPTIONS` are handled here, other transformers loading options are ignored, and what is left
    must be config fields (else TypeError with a did-you-mean). `target_lang` (MMS checkpoints) loads that
    language's adapter after the weights, as the reference's `from_pretrained(target_lang=)`.
    """
    owner = f"{cls.__name__}.from_pretrained"
    hub_kwargs, options, overrides = split_loading_options(kwargs, handled=MODEL_OPTIONS, owner=owner)
    where, local = locate(name_or_path, hub_kwargs.get("subfolder"))  # "no such directory" before any work
    source = where if local else os.fspath(name_or_path)  # a local subfolder is the checkpoint itself
    if local:
        hub_kwargs.pop("subfolder", None)
    config = options.get("config")
    if config is None:
        config = load_config(source, **hub_kwargs)
    elif isinstance(config, (str, os.PathLike)):
        config = load_config(config, **{k: v for k, v in hub_kwargs.items() if k != "subfolder"})
    elif not isinstance(config, HubertConfig):
        raise TypeError(f"{owner}: config must be a HubertConfig / Wav2Vec2Config or a path, got "
                        f"{type(config).__name__}")
    config = apply_overrides(config, overrides, owner, getattr(cls, "extra_config_keys", ()))
    from ..modeling.wav2vec2 import class_for_checkpoint

    cls = class_for_checkpoint(cls, config, source)  # a HuBERT class builds its wav2vec2 sibling
    state = options.get("state_dict")
    if state is not None:
        if not isinstance(state, Mapping):
            raise TypeError(f"{owner}: state_dict must be a mapping of reference names to arrays, got "
                            f"{type(state).__name__}")
        records, path = state, "state_dict"
    else:
        records, path = plan_checkpoint(source, use_safetensors=options.get("use_safetensors"),
                                        variant=options.get("variant"), **hub_kwargs)
    dtype = _model_dtype(options.get("dtype"), options.get("torch_dtype"))
    model = cls(config, **({"dtype": dtype} if dtype is not None else {}))
    result = load_state_dict_into(model, records, source=path,
                                  ignore_mismatched_sizes=bool(options.get("ignore_mismatched_sizes", False)))
    model.name_or_path = source  # where processors and the CLI find the model's other files
    target_lang = options.get("target_lang")
    if target_lang is not None:
        if not hasattr(model, "load_adapter"):
            raise ValueError(f"target_lang={target_lang!r}: {type(model).__name__} has no language adapters "
                             "(MMS adapters are loaded by TFWav2Vec2ForCTC)")
        model.load_adapter(target_lang, **hub_kwargs)
    if options.get("output_loading_info"):
        return model, loading_info(result)
    return model


# ------------------------------------------------------------------------------------------ MMS adapters

ADAPTER_FILES = ("adapter.{}.safetensors", "adapter.{}.bin")  # first found wins, as in the reference
# Language ids are file-name parts: letters, digits, "-" and "_" only (MMS: "eng", "cmn-script_simplified").
_LANGUAGE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def adapter_entries(model) -> list:
    """The weight-table entries `load_adapter` swaps: every attention adapter and the CTC head (the
    reference's `_get_adapters()`)."""
    return [entry for entry in reference_entries(model)
            if entry.row.module.startswith("lm_head") or "/adapter_layer/" in entry.row.module]


def _replace_head(model, vocab_size: int) -> None:
    """A new `lm_head` of `vocab_size` outputs (another language's vocabulary; the reference does the same),
    in the model's dtype policy. Keras locks a built model's state, so the old head is untracked and the new
    one tracked with the lock lifted (as Keras' own `_untrack_variable` does); functions traced with the old
    head are dropped (compile again before `fit()`)."""
    import keras

    from ..modeling.inference import _CACHE_ATTR

    tracker = model._tracker
    locked = tracker.locked
    tracker.unlock()
    try:
        tracker.untrack(model.lm_head)
        model.lm_head = keras.layers.Dense(vocab_size, name="lm_head", dtype=model.dtype_policy)
    finally:
        if locked:
            tracker.lock()
    model.lm_head.build((None, None, model.config.hidden_size))
    model.config.vocab_size = vocab_size
    model.__dict__.pop(_CACHE_ATTR, None)  # cached inference functions hold the old head
    model.train_function = model.test_function = model.predict_function = None


def load_adapter(model, target_lang: str, **hub_kwargs) -> None:
    """Reads `adapter.<target_lang>.safetensors` (or `.bin`) from where `model` was loaded and assigns the
    attention adapters and CTC head of that language (the body of `TFWav2Vec2ForCTC.load_adapter`).

    The file must hold exactly the adapter keys (the reference's rule); a head of another vocabulary size
    replaces `model.lm_head` and sets `config.vocab_size`. Everything is checked before any weight changes.

    Raises:
        ValueError: no `adapter_attn_dim`, a bad language id, missing / unexpected keys, bad shapes or dtypes.
        OSError: the model has no source directory, or no adapter file for the language.
    """
    config = model.config
    if getattr(config, "adapter_attn_dim", None) is None:
        raise ValueError(f"cannot load_adapter({target_lang!r}): the config has no adapter_attn_dim "
                         "(only MMS-style checkpoints have language adapters)")
    if not isinstance(target_lang, str) or not _LANGUAGE_ID.match(target_lang):
        raise ValueError(f"target_lang must be a language id (letters, digits, '-', '_'), got {target_lang!r}")
    source = getattr(model, "name_or_path", None)
    if source is None:
        raise OSError(f"load_adapter({target_lang!r}) reads adapter.{target_lang}.safetensors from the model's "
                      "checkpoint: load the model with from_pretrained first")
    found = None
    for pattern in ADAPTER_FILES:
        filename = pattern.format(target_lang)
        path = resolve_file(source, filename, required=False, **hub_kwargs)
        if path is not None:
            found = filename, path
            break
    if found is None:
        raise OSError(f"no adapter for language {target_lang!r} in {source}: looked for "
                      + ", ".join(p.format(target_lang) for p in ADAPTER_FILES))
    filename, path = found
    records = plan_file(filename, path)
    expected = {entry.keys[0] for entry in adapter_entries(model)}
    unexpected, missing = sorted(set(records) - expected), sorted(expected - set(records))
    if unexpected:
        raise ValueError(f"{path}: unexpected adapter keys {unexpected[:5]}")
    if missing:
        raise ValueError(f"{path}: missing adapter keys {missing[:5]}")
    head = records["lm_head.weight"]
    if len(head.shape) != 2 or records["lm_head.bias"].shape != (head.shape[0],):
        raise ValueError(f"{path}: lm_head.weight {tuple(head.shape)} / lm_head.bias "
                         f"{tuple(records['lm_head.bias'].shape)} are not a [vocab, hidden] head and its bias")
    vocab_size = int(head.shape[0])
    if vocab_size != config.vocab_size:
        config.copy(vocab_size=vocab_size)  # the new size must make a valid config (pad_token_id < vocab)
    # Shapes and dtypes of everything (the head at the file's vocabulary size) before any change.
    for entry in adapter_entries(model):
        shape = tuple(entry.variable.shape)
        if entry.row.module == "lm_head":
            shape = shape[:-1] + (vocab_size,)  # kernel [hidden, vocab] / bias [vocab]
        wanted = entry.layout.reference_shape(shape)
        record = records[entry.keys[0]]
        if tuple(record.shape) != wanted:
            raise ValueError(f"{path}: adapter weight {entry.keys[0]} has shape {tuple(record.shape)}, "
                             f"the model expects {wanted}")
        _check_dtype(path, entry.keys[0], record.dtype)
    if vocab_size != config.vocab_size:
        _replace_head(model, vocab_size)
    for entry in adapter_entries(model):
        record = records[entry.keys[0]]
        value = np.asarray(record.read())
        if value.shape != tuple(record.shape):
            raise ValueError(f"{path}: weight {entry.keys[0]} read as {value.shape}, its header said "
                             f"{tuple(record.shape)}")
        entry.variable.assign(_cast(path, entry.keys[0], entry.from_reference(value),
                                    _numpy_dtype(entry.variable.dtype)))
    logger.info("loaded the %s adapter from %s", target_lang, path)
