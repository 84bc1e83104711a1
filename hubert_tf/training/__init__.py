"""Training beyond `model.fit()`: one loop for one device, `MirroredStrategy` and
`MultiWorkerMirroredStrategy` (which Keras 3's `fit()` does not support, keras-team/keras#20585), with
crash-safe backups that resume mid-epoch.

    >>> from hubert_tf.training import fit_distributed                           # doctest: +SKIP
    >>> history = fit_distributed(model, dataset, strategy, epochs=3, steps_per_epoch=100,
    ...                           backup_dir="backup")                           # doctest: +SKIP

Names load on first use (PEP 562), so importing the package imports no TensorFlow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_names

# Public name -> the submodule defining it.
_LAZY_NAMES = {
    "fit_distributed": ".distributed", "is_chief": ".distributed",
    "TrainingState": ".backup", "load_backup": ".backup", "remove_backup": ".backup", "save_backup": ".backup",
}

__all__ = sorted(_LAZY_NAMES)

if TYPE_CHECKING:
    from .backup import TrainingState, load_backup, remove_backup, save_backup
    from .distributed import fit_distributed, is_chief


__getattr__, __dir__ = lazy_names(__name__, globals(), _LAZY_NAMES)
