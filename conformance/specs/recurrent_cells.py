"""RNNCell, LSTMCell and GRUCell: one step of the recurrences (conformance.families.recurrent)."""

from conformance.families.recurrent import recurrent_cell
from conformance.spec import declare

declare(recurrent_cell(
    "RNNCell",
    equations="h' = tanh|relu(x W_ih^T + b_ih + h W_hh^T + b_hh)"))
declare(recurrent_cell(
    "LSTMCell",
    equations="blocks i, f, g, o of x W_ih^T + b_ih + h W_hh^T + b_hh; c' = f⊙c + i⊙g; h' = o⊙tanh(c')"))
declare(recurrent_cell(
    "GRUCell",
    equations="blocks r, z, n; n = tanh(W_in x + b_in + r⊙(W_hn h + b_hn)); h' = (1 - z)⊙n + z⊙h"))
