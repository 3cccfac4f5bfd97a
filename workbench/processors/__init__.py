"""TEP-style processors: a described unit (region, time, model in, product out) run on the Dask cluster.

>>> from workbench.processors import get_processor, validate_inputs
>>> proc = get_processor("sea_ice_chart")
>>> inputs = validate_inputs("sea_ice_chart", {"region": {"bbox": [12, 42, 12.2, 42.2]}, "start": "2021-12-01",
...                                            "end": "2021-12-31", "model": {"name": "seaice", "version": 1}})
"""

from __future__ import annotations

from workbench.processors.base import (
    InputError,
    ModelRef,
    Processor,
    ProcessorInputs,
    UnknownProcessorError,
    get_processor,
    list_processors,
    validate_inputs,
)

__all__ = [
    "InputError",
    "ModelRef",
    "Processor",
    "ProcessorInputs",
    "UnknownProcessorError",
    "get_processor",
    "list_processors",
    "validate_inputs",
]
