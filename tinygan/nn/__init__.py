"""Neural-network building blocks: Module, Parameter, layers, ``functional`` (F) and ``init``."""

from . import functional, init
from .layers import (
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    ConvTranspose2d,
    Dropout,
    Flatten,
    LeakyReLU,
    Linear,
    ReLU,
    Sequential,
    Sigmoid,
    Tanh,
    Unflatten,
)
from .module import IncompatibleKeys, Module, Parameter

__all__ = [
    "BatchNorm1d", "BatchNorm2d", "Conv2d", "ConvTranspose2d", "Dropout", "Flatten",
    "IncompatibleKeys", "LeakyReLU", "Linear", "Module", "Parameter", "ReLU", "Sequential",
    "Sigmoid", "Tanh", "Unflatten", "functional", "init",
]  # fmt: skip
