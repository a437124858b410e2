"""jaxback: explicit, hand-derived gradients in JAX, each proven against autodiff."""

from ._attention import AttentionParams, attention
from ._activations import gelu, leaky_relu, relu, sigmoid, silu, softplus, tanh
from ._batch_norm import BatchNormParams, BatchNormState, batch_norm, batch_norm_state
from ._conv import Conv2dParams, conv2d
from ._conv1d import Conv1dParams, conv1d
from ._conv_transpose import ConvTranspose2dParams, conv_transpose2d
from ._backprop import backprop
from ._combinators import parallel, residual, serial
from ._remat import remat
from ._dropout import dropout
from ._embedding import EmbeddingParams, embedding
from ._layer import Layer, bind, make_layer
from ._model import Model
from ._mean import global_avg_pool, mean
from ._modes import MODES, value_and_grad
from ._group_norm import GroupNormParams, group_norm
from ._linear import LinearParams, linear
from ._norm import LayerNormParams, RMSNormParams, layer_norm, rms_norm
from ._lstm import LSTMParams, LSTMState, lstm, lstm_state
from ._gru import GRUParams, gru, gru_state
from ._losses import binary_cross_entropy_with_logits, mse, softmax_cross_entropy
from ._positions import PositionParams, position_embedding
from ._pooling import avg_pool2d, flatten, max_pool2d
from ._softmax import log_softmax, softmax
from ._upsample import upsample
from ._structure import fan_in_concat, fan_in_sum, fan_out, identity, reshape, select

__version__ = "0.1.0"

__all__ = [
    "Layer",
    "make_layer",
    "bind",
    "Model",
    "serial",
    "residual",
    "parallel",
    "remat",
    "fan_out",
    "fan_in_sum",
    "fan_in_concat",
    "select",
    "identity",
    "reshape",
    "backprop",
    "value_and_grad",
    "MODES",
    "linear",
    "LinearParams",
    "relu",
    "leaky_relu",
    "sigmoid",
    "tanh",
    "gelu",
    "softplus",
    "silu",
    "softmax",
    "log_softmax",
    "softmax_cross_entropy",
    "mse",
    "binary_cross_entropy_with_logits",
    "embedding",
    "EmbeddingParams",
    "position_embedding",
    "PositionParams",
    "dropout",
    "attention",
    "AttentionParams",
    "layer_norm",
    "LayerNormParams",
    "rms_norm",
    "RMSNormParams",
    "group_norm",
    "GroupNormParams",
    "batch_norm",
    "BatchNormParams",
    "BatchNormState",
    "batch_norm_state",
    "conv2d",
    "Conv2dParams",
    "conv1d",
    "Conv1dParams",
    "conv_transpose2d",
    "ConvTranspose2dParams",
    "max_pool2d",
    "avg_pool2d",
    "flatten",
    "mean",
    "global_avg_pool",
    "upsample",
    "lstm",
    "LSTMParams",
    "LSTMState",
    "lstm_state",
    "gru",
    "GRUParams",
    "gru_state",
]


# jb.testing, imported on first use (as np.testing): the checkers cost nothing until asked for.
def __getattr__(name):
    if name == "testing":
        import importlib

        return importlib.import_module(".testing", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
