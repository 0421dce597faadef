"""Dynamic quantized modules (float in, float out)."""

from .linear import Linear
from .linear_fp16 import LinearFP16
from .rnn import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell
from .transformer import MultiheadAttention

__all__ = ["Linear", "LinearFP16", "LSTM", "GRU", "RNN", "LSTMCell", "GRUCell", "RNNCell", "MultiheadAttention"]
