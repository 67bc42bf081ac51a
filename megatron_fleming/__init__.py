"""megatron_fleming: the Fleming-VL (InternVL3-style) model and its training on megatron-core."""

__version__ = "0.1.0"
