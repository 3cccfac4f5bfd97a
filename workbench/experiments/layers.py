"""Layer ablation helper: a Keras Sequential model without some named layers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from workbench.experiments.searchspace import ExperimentError

if TYPE_CHECKING:
    import keras

__all__ = ["remove_layers"]


def remove_layers(model: "keras.Sequential", names: Sequence[str]) -> "keras.Sequential":
    """A new, untrained Sequential model with the layers of ``model`` less those named ``names``.

    Layers are re-created from their configs (fresh weights), so the result
    trains from scratch like the base model. Use it in a ``train_fn`` with
    ``hparams["excluded_layers"]``.
    """
    import keras

    if not isinstance(model, keras.Sequential):
        raise ExperimentError(f"remove_layers needs a keras.Sequential model, got {type(model).__name__}")
    have = [layer.name for layer in model.layers]
    missing = [n for n in names if n not in have]
    if missing:
        raise ExperimentError(f"model has no layer(s) {missing}; its layers are {have}")
    kept = [
        layer.__class__.from_config(layer.get_config())
        for layer in model.layers
        if layer.name not in set(names)
    ]
    inputs = [keras.Input(shape=model.input_shape[1:])] if getattr(model, "inputs", None) else []
    try:
        return keras.Sequential(inputs + kept, name=f"{model.name}_ablated")
    except ValueError as exc:
        raise ExperimentError(f"the model without {list(names)} is not valid: {exc}") from exc
