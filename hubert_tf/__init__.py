"""HuBERT for TensorFlow 2 / Keras 3: numerically the reference `transformers` HuBERT.

`import hubert_tf` is light: it imports no TensorFlow, Keras or numpy. Every public name is loaded on
first use (PEP 562 module `__getattr__`), so `HubertConfig`, the processor classes and `load_audio` work
without TensorFlow, and TensorFlow is imported only when a TensorFlow-backed name (a model class,
`transcribe`, `extract_features`) is touched.

Keras registration: the model and layer classes register themselves with Keras when their module is
imported. So that `keras.saving.load_model("model.keras")` finds them with no `custom_objects` even
when nothing but `import hubert_tf` ran, importing `hubert_tf` also arranges for `hubert_tf.modeling`
to be imported as soon as Keras itself is (right away when Keras is already loaded). Keras imports
TensorFlow anyway, so this costs only the import of the model code, and a process that never imports
Keras never pays for it.

Example:

>>> import hubert_tf, sys
>>> config = hubert_tf.HubertConfig(num_hidden_layers=2)
>>> config.num_hidden_layers
2
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import TYPE_CHECKING

from ._lazy import lazy_names

__version__ = "0.1.0"

# Public name -> the module defining it (relative to this package).
_LAZY_NAMES = {
    "HubertConfig": ".configuration",
    "TFHubertEncoder": ".modeling",
    "TFHubertEncoderStableLayerNorm": ".modeling",
    "TFHubertFeatureEncoder": ".modeling",
    "TFHubertForCTC": ".modeling",
    "TFHubertForPreTraining": ".modeling",
    "TFHubertForSequenceClassification": ".modeling",
    "TFHubertMainLayer": ".modeling",
    "TFHubertModel": ".modeling",
    "TFHubertPreTrainedModel": ".modeling",
    "TFWav2Vec2ForCTC": ".modeling",
    "TFWav2Vec2ForSequenceClassification": ".modeling",
    "TFWav2Vec2Model": ".modeling",
    "Wav2Vec2Config": ".configuration",
    "load_config": ".configuration",
    "align": ".pipelines",
    "classify": ".pipelines",
    "extract_features": ".pipelines",
    "transcribe": ".pipelines",
    "HubertCTCTokenizer": ".processing",
    "HubertFeatureExtractor": ".processing",
    "HubertProcessor": ".processing",
    "HubertProcessorWithLM": ".processing",
    "load_audio": ".processing",
}
# Subpackages reachable as attributes (`hubert_tf.units.KMeans`) without an explicit import, as they
# were when this file imported them eagerly.
_SUBMODULES = (
    "activations", "checkpoints", "cli", "configuration", "data", "export", "files", "hub", "metrics",
    "modeling", "pipelines", "processing", "serving", "units",
)

__all__ = sorted(_LAZY_NAMES) + ["__version__"]

if TYPE_CHECKING:  # static analysers and IDEs see the real names
    from .configuration import HubertConfig, Wav2Vec2Config, load_config
    from .modeling import (
        TFHubertEncoder,
        TFHubertEncoderStableLayerNorm,
        TFHubertFeatureEncoder,
        TFHubertForCTC,
        TFHubertForPreTraining,
        TFHubertForSequenceClassification,
        TFHubertMainLayer,
        TFHubertModel,
        TFHubertPreTrainedModel,
        TFWav2Vec2ForCTC,
        TFWav2Vec2ForSequenceClassification,
        TFWav2Vec2Model,
    )
    from .pipelines import align, classify, extract_features, transcribe
    from .processing import HubertCTCTokenizer, HubertFeatureExtractor, HubertProcessor, load_audio


__getattr__, __dir__ = lazy_names(__name__, globals(), _LAZY_NAMES, tuple(_SUBMODULES))


# ----------------------------------------------------------------------------------------- Keras hook
_KERAS = "keras"


def _register_with_keras() -> None:
    """Imports the model code, whose `register_keras_serializable` decorators register every class."""
    try:
        importlib.import_module(".modeling", __name__)
    except Exception as error:  # never break the user's own `import keras`
        import warnings

        warnings.warn(f"hubert_tf could not register its layers with Keras ({type(error).__name__}: "
                      f"{error}); import hubert_tf.modeling before keras.saving.load_model", stacklevel=2)


class _KerasImportHook:
    """A `sys.meta_path` finder that runs `_register_with_keras` right after `keras` is first imported.

    It finds nothing itself: it asks the other finders for keras's spec and wraps only that spec's
    loader's `exec_module` (on the loader instance, restored after the call), then removes itself.
    """

    def find_spec(self, fullname, path=None, target=None):
        if fullname != _KERAS:
            return None
        self.remove()
        spec = importlib.util.find_spec(fullname)  # the normal finders, now without this one
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        original = loader.exec_module

        def exec_module(module):
            try:
                original(module)
            finally:
                try:
                    del loader.exec_module
                except AttributeError:  # pragma: no cover - the loader refused the attribute
                    pass
            _register_with_keras()

        try:
            loader.exec_module = exec_module
        except AttributeError:  # pragma: no cover - a loader with __slots__: register after the fact
            return spec
        return spec

    def remove(self) -> None:
        while self in sys.meta_path:
            sys.meta_path.remove(self)


def _install_keras_hook() -> None:
    if _KERAS in sys.modules:
        # Keras (and so TensorFlow) is loaded already: register now; the extra cost is our model code.
        if "hubert_tf.modeling" not in sys.modules:
            _register_with_keras()
        return
    if not any(isinstance(finder, _KerasImportHook) for finder in sys.meta_path):
        sys.meta_path.insert(0, _KerasImportHook())


_install_keras_hook()
