"""Crash-safe training backups: the model's variables, the optimizer's variables (its step counter
included), the metrics' running states and the data position, in one `.npz` file written atomically.

One file, renamed into place in one step (`hubert_tf.files.atomic_write`): a process killed at any
moment leaves either the previous backup or the new one, never a mix of the two or a half-written file.
"""

from __future__ import annotations

import dataclasses
import json
import os
import zipfile

import numpy as np

from ..files import atomic_write, loads_json

BACKUP_NAME = "training_state.npz"
FORMAT_VERSION = 1


@dataclasses.dataclass
class TrainingState:
    """Where training stands: `epoch` (0-based) and `step_in_epoch` batches of it already applied,
    `global_step` batches in all, the per-epoch `history` logged so far (e.g. `{"loss": [...]}`) and the
    losses of the current epoch's applied batches (`epoch_losses`, for its mean after a restart)."""

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    history: dict = dataclasses.field(default_factory=dict)
    epoch_losses: list = dataclasses.field(default_factory=list)


def _variable_groups(model):
    optimizer = getattr(model, "optimizer", None)
    return {"model": list(model.variables), "optimizer": list(optimizer.variables) if optimizer is not None else [],
            "metrics": list(model.metrics_variables)}


def save_backup(directory, model, state: TrainingState) -> str:
    """Writes `directory/training_state.npz` atomically: every variable of `model`, of `model.optimizer`
    and of its metrics, and `state`.

    Args:
        directory: created if needed. Under a multi-worker strategy only the chief should call this
            (`hubert_tf.training.is_chief`); the values are the same on every worker.
        model: a built Keras model (its optimizer built too, to save its slots).
        state: the TrainingState to record.

    Returns:
        The path written.

    Example:

    >>> save_backup("backup", model, TrainingState(epoch=1, step_in_epoch=5, global_step=25))  # doctest: +SKIP
    """
    os.makedirs(directory, exist_ok=True)
    arrays, index = {}, {}
    for group, variables in _variable_groups(model).items():
        index[group] = []
        for i, variable in enumerate(variables):
            value = np.asarray(variable.numpy() if hasattr(variable, "numpy") else variable)
            arrays[f"{group}/{i:05d}"] = value
            index[group].append({"path": str(getattr(variable, "path", variable.name)),
                                 "shape": list(value.shape), "dtype": str(value.dtype)})
    header = {"format_version": FORMAT_VERSION, "state": dataclasses.asdict(state), "variables": index}
    arrays["header"] = np.frombuffer(json.dumps(header).encode("utf-8"), np.uint8)
    path = os.path.join(directory, BACKUP_NAME)
    with atomic_write(path, "wb") as f:
        np.savez(f, **arrays)
    return path


def load_backup(directory, model) -> TrainingState | None:
    """Restores the variables of `model` and `model.optimizer` from `directory/training_state.npz`.

    Args:
        directory: where `save_backup` wrote.
        model: the same architecture, built, with its optimizer built (call under the strategy's scope
            is not needed: assigning to distributed variables works from the cross-replica context).

    Returns:
        The saved TrainingState, or None when there is no backup yet (nothing is changed then).

    Raises:
        ValueError: the file is not a backup of this format, or its variables do not match the model's
            (count, shape), naming the file and the first mismatching variable. Nothing is assigned then.
    """
    path = os.path.join(directory, BACKUP_NAME)
    if not os.path.exists(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise ValueError(f"{path}: not a readable training backup ({error})") from None
    if "header" not in arrays:
        raise ValueError(f"{path}: not a training backup (no header)")
    header = loads_json(arrays.pop("header").tobytes().decode("utf-8", "replace"), path)
    if not isinstance(header, dict) or header.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: unsupported training backup format "
                         f"{header.get('format_version') if isinstance(header, dict) else header!r}")
    assignments = []
    for group, variables in _variable_groups(model).items():
        saved = [k for k in sorted(arrays) if k.startswith(group + "/")]
        if len(saved) != len(variables):
            raise ValueError(f"{path}: {len(saved)} {group} variables saved but the model has {len(variables)} "
                             f"(a different architecture, or the optimizer is not built)")
        for key, variable in zip(saved, variables):
            value = arrays[key]
            if tuple(value.shape) != tuple(variable.shape):
                raise ValueError(f"{path}: {group} variable {getattr(variable, 'path', variable.name)} has shape "
                                 f"{tuple(variable.shape)} but the backup holds {tuple(value.shape)}")
            assignments.append((variable, value))
    for variable, value in assignments:
        variable.assign(value)
    try:
        return TrainingState(**header["state"])
    except TypeError as error:
        raise ValueError(f"{path}: bad training state {header.get('state')!r} ({error})") from None


def remove_backup(directory) -> None:
    """Deletes `directory/training_state.npz` if present (training finished: the next run starts anew)."""
    try:
        os.remove(os.path.join(directory, BACKUP_NAME))
    except FileNotFoundError:
        pass
