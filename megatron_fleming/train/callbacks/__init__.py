"""Side concerns of the training loop, one per module: console, TensorBoard and JSON-lines logs.

The trainer turns each stage's `StepReport` into `StepMetrics` (global values, identical on every
rank) and hands them to the callbacks of rank 0; a callback never drives the loop.
"""

from megatron_fleming.train.callbacks.base import Callback, StepMetrics
from megatron_fleming.train.callbacks.console import ConsoleLogger
from megatron_fleming.train.callbacks.jsonl import METRICS_FILE, MetricsFile
from megatron_fleming.train.callbacks.tensorboard import TensorBoardLogger

__all__ = ["METRICS_FILE", "Callback", "ConsoleLogger", "MetricsFile", "StepMetrics",
           "TensorBoardLogger"]
