"""RNN, LSTM and GRU over whole sequences, forward and backward through time: padded input, and
(variant ``packed``) the PackedSequence pack_padded_sequence makes of it (conformance.families)."""

from conformance.families.recurrent import recurrent_stack
from conformance.spec import declare

declare(recurrent_stack(
    "RNN", packed_input=False,
    equations="h_t = tanh|relu(x W_ih^T + b_ih + h W_hh^T + b_hh)"))
declare(recurrent_stack(
    "RNN", packed_input=True,
    equations="h_t = tanh|relu(x W_ih^T + b_ih + h W_hh^T + b_hh)"))
declare(recurrent_stack(
    "LSTM", packed_input=False,
    equations="gates i, f, g, o (row blocks); c_t = f⊙c + i⊙g; h_t = o⊙tanh(c_t), projected by W_hr if proj_size > 0"))
declare(recurrent_stack(
    "LSTM", packed_input=True,
    equations="gates i, f, g, o (row blocks); c_t = f⊙c + i⊙g; h_t = o⊙tanh(c_t), projected by W_hr if proj_size > 0"))
declare(recurrent_stack(
    "GRU", packed_input=False,
    equations="gates r, z, n; n = tanh(W_in x + b_in + r⊙(W_hn h + b_hn)); h_t = (1 - z)⊙n + z⊙h"))
declare(recurrent_stack(
    "GRU", packed_input=True,
    equations="gates r, z, n; n = tanh(W_in x + b_in + r⊙(W_hn h + b_hn)); h_t = (1 - z)⊙n + z⊙h"))
