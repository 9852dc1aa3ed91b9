"""Graph IR: typed node dataclasses (their docstrings give the equations), the Graph, the executor."""

from snncompile.ir.graph import Graph
from snncompile.ir.linear import BatchNorm, Conv2d, Linear
from snncompile.ir.neurons import IF
from snncompile.ir.node import Node, Shape
from snncompile.ir.ops import (
    PROBABILITY_OUTPUTS,
    Add,
    Concat,
    Flatten,
    Input,
    LogSoftmax,
    Output,
    Permute,
    ReLU,
    Reshape,
    Sigmoid,
    Softmax,
)
from snncompile.ir.pooling import AvgPool2d, GlobalAvgPool, MaxPool2d
from snncompile.ir.quant import Clamp, Floor, QuantClip, Quantize

__all__ = [
    "IF",
    "PROBABILITY_OUTPUTS",
    "Add",
    "AvgPool2d",
    "BatchNorm",
    "Clamp",
    "Concat",
    "Conv2d",
    "Flatten",
    "Floor",
    "GlobalAvgPool",
    "Graph",
    "Input",
    "Linear",
    "LogSoftmax",
    "MaxPool2d",
    "Node",
    "Output",
    "Permute",
    "QuantClip",
    "Quantize",
    "ReLU",
    "Reshape",
    "Shape",
    "Sigmoid",
    "Softmax",
]
