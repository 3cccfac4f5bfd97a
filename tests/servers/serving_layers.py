"""A Keras layer that fails at predict time on out-of-range input (for the serving server's 500 test).

The serving names this module in its ``imports`` so the server process registers the layer
before it loads the model.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="workbench_tests")
class RangeGuard(keras.layers.Layer):
    """Identity that raises (``InvalidArgumentError``) when any input value is at or above ``limit``."""

    def __init__(self, limit: float = 1e6, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.limit = float(limit)

    def call(self, inputs: Any) -> Any:
        check = tf.debugging.assert_less(inputs, tf.cast(self.limit, inputs.dtype), message="input out of range")
        with tf.control_dependencies([check]):
            return tf.identity(inputs)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "limit": self.limit}


def build(n_features: int = 4, n_classes: int = 2) -> keras.Model:
    """A tiny classifier behind a :class:`RangeGuard`."""
    inp = keras.Input(shape=(n_features,), name="x")
    x = RangeGuard(name="guard")(inp)
    out = keras.layers.Dense(n_classes, activation="softmax", name="classes")(x)
    return keras.Model(inp, out, name="guarded")
