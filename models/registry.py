"""The registry of device models: a name -> the model with its preset parameters.

Layer: models (leaf). The one module that imports every device; the devices themselves import
only :mod:`models.device` and :mod:`models.pulse`, so there is no import circle.
"""

from __future__ import annotations

from typing import Callable, Mapping

from models.cap3t1c import Cap3T1C
from models.device import DeviceModel
from models.ecram import ECRAM
from models.errors import ParameterError
from models.linear import LinearDevice
from models.pcm import PCM
from models.rram import RRAM

__all__ = ["REGISTRY", "get_device", "device_names"]

#: name -> model class (called with no argument: the preset).
REGISTRY: Mapping[str, Callable[[], DeviceModel]] = {
    "pcm": PCM, "rram": RRAM, "ecram": ECRAM, "cap3t1c": Cap3T1C, "linear": LinearDevice}


def device_names() -> list[str]:
    """Names in the registry."""
    return list(REGISTRY)


def get_device(name: str, params=None) -> DeviceModel:
    """The model ``name`` with its preset parameters (or ``params``, its dataclass)."""
    if name not in REGISTRY:
        raise ParameterError(f"unknown device {name!r}; known: {', '.join(REGISTRY)}")
    cls = REGISTRY[name]
    return cls() if params is None else cls(params)
