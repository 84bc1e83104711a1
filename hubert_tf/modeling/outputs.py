"""Model outputs readable as attributes, as keys and by position, and understood by Keras and tf.nest."""

from __future__ import annotations

import optree


class ModelOutput(dict):
    """A dict of the outputs that are present (None ones are left out), in field order.

    `out.logits`, `out["logits"]` and `out[0]` (the first present field) all work; `to_tuple()` gives the
    present values in order, as transformers' outputs do. Registered with Keras' tree utilities, so a
    model called on `keras.Input` returns a `ModelOutput` of KerasTensors.
    """

    fields: tuple[str, ...] = ()

    def __init__(self, *args, **kwargs):
        data = dict(*args, **kwargs)
        order = [k for k in type(self).fields if k in data] + [k for k in data if k not in type(self).fields]
        super().__init__((k, data[k]) for k in order if data[k] is not None)

    def __getattr__(self, name):
        if name in type(self).fields:
            return self.get(name)
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"{type(self).__name__} has no field {name!r}") from None

    def __getitem__(self, key):
        if isinstance(key, (int, slice)):
            return self.to_tuple()[key]
        return super().__getitem__(key)

    def to_tuple(self) -> tuple:
        return tuple(self.values())

    def without(self, *names):
        """A copy of this output without the fields `names`."""
        return type(self)({k: v for k, v in self.items() if k not in names})

    def __reduce__(self):
        return type(self), (dict(self),)


class BaseModelOutput(ModelOutput):
    """`last_hidden_state` [batch, frames, hidden]; `extract_features` [batch, frames, conv_dim[-1]] (the
    conv features, when asked); `hidden_states` (num_hidden_layers + 1 tensors, or the requested
    `output_layers`); `attentions` (one [batch, heads, frames, frames] per layer); `frame_lengths`
    [batch] int32 valid frames per row (the main layer's output; the models leave it out, as the
    reference's outputs have no such field)."""

    fields = ("last_hidden_state", "extract_features", "hidden_states", "attentions", "frame_lengths")


class CausalLMOutput(ModelOutput):
    """`loss` (scalar, when labels are given); `logits` [batch, frames, vocab]; `hidden_states`; `attentions`."""

    fields = ("loss", "logits", "hidden_states", "attentions")


class SequenceClassifierOutput(ModelOutput):
    """`loss` (scalar, when labels are given); `logits` [batch, num_labels]; `hidden_states`; `attentions`."""

    fields = ("loss", "logits", "hidden_states", "attentions")


def _register(cls):
    # Keras 3 flattens nested outputs with optree in the "keras" namespace; tf.nest treats any Mapping
    # subclass as a dict and rebuilds it with `type(obj)(pairs)`, which this class accepts.
    optree.register_pytree_node(
        cls,
        lambda out: (tuple(out.values()), tuple(out.keys()), tuple(out.keys())),
        lambda keys, values: cls(zip(keys, values)),
        namespace="keras",
    )


for _cls in (ModelOutput, BaseModelOutput, CausalLMOutput, SequenceClassifierOutput):
    _register(_cls)
