"""Deliberately wrong recurrent adapters: each reproduces one real implementer's mistake on top of torch.

- ``LSTMSwapForgetCell``: LSTM reading the weights' gate blocks as (i, g, f, o) instead of (i, f, g, o).
- ``GRUSwapResetUpdate``: GRU reading the blocks as (z, r, n) instead of (r, z, n).
- ``ReverseDirectionNotReversed``: a bidirectional layer whose reverse direction runs forward in time.
- ``RNNIgnoresH0BatchFirst``: an RNN that drops the given h0 when batch_first=True.
- ``PackedRunsOverPadding``: a packed batch padded and run over the whole padded length (lengths
  ignored: the reverse direction starts in the padding, h_n is taken at the padded end).
- ``HnDirectionMajor``: h_n (and c_n) laid out direction-major ([all forward layers, all reverse
  layers]) instead of torch's layer-major l·D + d.
- ``DropoutAfterLastLayer``: dropout applied to the last layer's output too.
- ``GRUCellUpdateConvention``: GRUCell with the other paper's convention h' = z ⊙ n + (1 - z) ⊙ h.
- ``GRUCellResetBeforeMatmul``: GRUCell with n = tanh(W_in x + b_in + W_hn (r ⊙ h) + b_hn) (the
  reset applied before the hidden product, as in Cho et al. and Keras' reset_after=False).
- ``PlantedWhhError``: not a mistake but a planted small error (every W_hh off by 2^-20 relative,
  8 float32 ulps), run in float32: the tolerance is tight enough to see it.

The sequence utilities:

- ``PadSequenceIgnoresPaddingSide``: pad_sequence always padding on the right.
- ``PackSequenceRowsUnsorted``: pack_sequence(enforce_sorted=False) that sorts the lengths (and
  reports the permutation) but packs each step's rows in the caller's batch order.
- ``UnpadSequenceBatchFirstInverted``: unpad_sequence transposing when batch_first is True instead
  of when it is False.
- ``UnpackSequenceSortedOrder``: unpack_sequence returning the sequences in the packed (sorted)
  order, unsorted_indices forgotten.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import _VF
from torch.nn.utils import rnn as rnn_utils
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from backends.torch_backend import TorchBackend

_GATES = {"LSTM": 4, "GRU": 3}


def _reorder_blocks(w: torch.Tensor, gates: int, order: tuple[int, ...]) -> torch.Tensor:
    """The row blocks of a gate-stacked weight or bias, in ``order`` (differentiable)."""
    return torch.cat([w.chunk(gates, 0)[i] for i in order], 0)


def _blocks_read_as(cls: type, gates: int, order: tuple[int, ...]) -> type:
    """A subclass of an RNN module whose kernel reads the gate blocks in ``order``."""

    class Reordered(cls):  # type: ignore[misc, valid-type]
        def _update_flat_weights(self) -> None:
            self._flat_weights = [
                _reorder_blocks(getattr(self, n), gates, order) if n.startswith(("weight_ih", "weight_hh", "bias"))
                else getattr(self, n) for n in self._flat_weights_names]

    return Reordered


class _ReadsBlocks(TorchBackend):
    op = ""
    order: tuple[int, ...] = ()

    def build_module(self, case, cls, kwargs):
        if case.op == self.op:
            return _blocks_read_as(cls, _GATES[self.op], self.order)(**kwargs)
        return super().build_module(case, cls, kwargs)


class LSTMSwapForgetCell(_ReadsBlocks):
    name = "wrong-lstm-swap-f-g"
    op = "LSTM"
    order = (0, 2, 1, 3)


class GRUSwapResetUpdate(_ReadsBlocks):
    name = "wrong-gru-swap-r-z"
    op = "GRU"
    order = (1, 0, 2)


def _direction_weights(module: torch.nn.Module, layer: int, reverse: bool) -> list[torch.Tensor]:
    suffix = f"_l{layer}" + ("_reverse" if reverse else "")
    names = ["weight_ih", "weight_hh"] + (["bias_ih", "bias_hh"] if module.bias else [])
    names += ["weight_hr"] if getattr(module, "proj_size", 0) else []
    return [getattr(module, n + suffix) for n in names]


def _one_direction(module: torch.nn.Module, x: torch.Tensor, hx: tuple[torch.Tensor, ...],
                   weights: list[torch.Tensor]) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """One layer, one direction, forward in time; x (T, B, I), hx of (1, B, ·) states."""
    if module.mode == "LSTM":
        out, h, c = _VF.lstm(x, hx, weights, module.bias, 1, 0.0, module.training, False, False)
        return out, (h, c)
    fn = {"GRU": _VF.gru, "RNN_TANH": _VF.rnn_tanh, "RNN_RELU": _VF.rnn_relu}[module.mode]
    out, h = fn(x, hx[0], weights, module.bias, 1, 0.0, module.training, False, False)
    return out, (h,)


def _no_reverse_forward(module: torch.nn.Module, x: torch.Tensor, hx=None):
    """The stack with every reverse direction run forward in time (padded input)."""
    unbatched = x.dim() == 2
    x = x.unsqueeze(1) if unbatched else (x.transpose(0, 1) if module.batch_first else x)
    lstm = module.mode == "LSTM"
    states = list(hx) if lstm and hx is not None else ([hx] if hx is not None else None)
    if states is not None and unbatched:
        states = [s.unsqueeze(1) for s in states]
    batch, dirs = x.shape[1], 2 if module.bidirectional else 1
    real = module.proj_size or module.hidden_size
    if states is None:
        states = [x.new_zeros(module.num_layers * dirs, batch, real)]
        if lstm:
            states.append(x.new_zeros(module.num_layers * dirs, batch, module.hidden_size))
    finals: list[list[torch.Tensor]] = [[] for _ in states]
    layer_in = x
    for layer in range(module.num_layers):
        if layer and module.training and module.dropout == 1.0:
            layer_in = layer_in * 0
        outs = []
        for d in range(dirs):
            k = layer * dirs + d
            out, hs = _one_direction(module, layer_in, tuple(s[k:k + 1] for s in states),
                                     _direction_weights(module, layer, d == 1))
            outs.append(out)
            for acc, h in zip(finals, hs):
                acc.append(h)
        layer_in = torch.cat(outs, -1)
    out = layer_in.squeeze(1) if unbatched else (layer_in.transpose(0, 1) if module.batch_first else layer_in)
    finals_t = [torch.cat(f, 0) for f in finals]
    if unbatched:
        finals_t = [f.squeeze(1) for f in finals_t]
    return out, (tuple(finals_t) if lstm else finals_t[0])


class ReverseDirectionNotReversed(TorchBackend):
    name = "wrong-reverse-not-reversed"

    def call_target(self, case, fn, args, kwargs):
        if case.op in ("RNN", "LSTM", "GRU") and getattr(fn, "bidirectional", False) \
                and not isinstance(args[0], PackedSequence):
            return _no_reverse_forward(fn, *args)
        return super().call_target(case, fn, args, kwargs)


class RNNIgnoresH0BatchFirst(TorchBackend):
    name = "wrong-rnn-ignores-h0-batch-first"

    def call_target(self, case, fn, args, kwargs):
        if case.op == "RNN" and getattr(fn, "batch_first", False) and len(args) > 1:
            return fn(args[0])
        return super().call_target(case, fn, args, kwargs)


class PackedRunsOverPadding(TorchBackend):
    name = "wrong-packed-runs-over-padding"

    def call_target(self, case, fn, args, kwargs):
        if case.op in ("RNN", "LSTM", "GRU") and isinstance(args[0], PackedSequence):
            packed_in = args[0]
            padded, lengths = pad_packed_sequence(packed_in, batch_first=fn.batch_first)
            out, state = fn(padded, *args[1:])
            repacked = pack_padded_sequence(out, lengths, batch_first=fn.batch_first,
                                            enforce_sorted=packed_in.sorted_indices is None)
            return repacked, state
        return super().call_target(case, fn, args, kwargs)


def _is_stack(fn) -> bool:
    """The call is the RNN module itself (not the pack_padded_sequence call node inside it)."""
    return isinstance(fn, torch.nn.RNNBase)


class HnDirectionMajor(TorchBackend):
    name = "wrong-h-n-direction-major"

    def call_target(self, case, fn, args, kwargs):
        if not _is_stack(fn):
            return super().call_target(case, fn, args, kwargs)
        out, state = super().call_target(case, fn, args, kwargs)
        if fn.bidirectional:
            dirs, layers = 2, fn.num_layers
            order = [layer * dirs + d for d in range(dirs) for layer in range(layers)]
            state = tuple(s[order] for s in state) if isinstance(state, tuple) else state[order]
        return out, state


class DropoutAfterLastLayer(TorchBackend):
    name = "wrong-dropout-after-last-layer"

    def call_target(self, case, fn, args, kwargs):
        if not _is_stack(fn):
            return super().call_target(case, fn, args, kwargs)
        out, state = super().call_target(case, fn, args, kwargs)
        if fn.training and fn.dropout > 0 and not isinstance(out, PackedSequence):
            out = F.dropout(out, fn.dropout, True)
        return out, state


def _gru_cell(cell: torch.nn.GRUCell, x: torch.Tensor, h: torch.Tensor | None, mistake: str) -> torch.Tensor:
    """A hand-written GRUCell with one of two conventions torch does not use."""
    unbatched = x.dim() == 1
    x = x.unsqueeze(0) if unbatched else x
    h = x.new_zeros(x.shape[0], cell.hidden_size) if h is None else (h.unsqueeze(0) if unbatched else h)
    gi = F.linear(x, cell.weight_ih, cell.bias_ih)
    xr, xz, xn = gi.chunk(3, 1)
    w_hr, w_hz, w_hn = cell.weight_hh.chunk(3, 0)
    b_hr, b_hz, b_hn = cell.bias_hh.chunk(3, 0) if cell.bias_hh is not None else (None, None, None)
    r = torch.sigmoid(xr + F.linear(h, w_hr, b_hr))
    z = torch.sigmoid(xz + F.linear(h, w_hz, b_hz))
    if mistake == "reset before matmul":
        n = torch.tanh(xn + F.linear(r * h, w_hn, b_hn))
        out = (1 - z) * n + z * h
    else:
        n = torch.tanh(xn + r * F.linear(h, w_hn, b_hn))
        out = z * n + (1 - z) * h
    return out.squeeze(0) if unbatched else out


class _GRUCellMistake(TorchBackend):
    mistake = ""

    def call_target(self, case, fn, args, kwargs):
        if case.op == "GRUCell":
            return _gru_cell(fn, args[0], args[1] if len(args) > 1 else None, self.mistake)
        return super().call_target(case, fn, args, kwargs)


class GRUCellUpdateConvention(_GRUCellMistake):
    name = "wrong-grucell-update-convention"
    mistake = "update convention"


class GRUCellResetBeforeMatmul(_GRUCellMistake):
    name = "wrong-grucell-reset-before-matmul"
    mistake = "reset before matmul"


def _weights_scaled(cls: type, factor: float) -> type:
    """A subclass of an RNN module whose kernel sees every W_hh multiplied by ``factor``."""

    class Scaled(cls):  # type: ignore[misc, valid-type]
        def _update_flat_weights(self) -> None:
            self._flat_weights = [getattr(self, n) * factor if n.startswith("weight_hh") else getattr(self, n)
                                  for n in self._flat_weights_names]

    return Scaled


class _PlantedError(TorchBackend):
    """A planted small error: W_hh off by a relative ``delta`` (a few dozen float32 ulps), to show
    that the tolerance is tight enough to see it."""

    delta = 0.0

    def build_module(self, case, cls, kwargs):
        if issubclass(cls, torch.nn.RNNBase):
            return _weights_scaled(cls, 1.0 + self.delta)(**kwargs)
        return super().build_module(case, cls, kwargs)


class PlantedWhhError(_PlantedError):
    """W_hh off by 2^-18 relative: 64 float32 units of roundoff (32 ulps) in every recurrent weight.

    The error reaches the outputs scaled by a gate derivative (at most 1/4 through a sigmoid) and
    diluted by the |W_ih x| and bias terms of absref, so 2^-20 (8 ulps) sits at the edge of the
    bound (utilisation 0.3 to 1.3 at ci): it is caught in some regimes, not reliably."""

    name = "planted-w-hh-error"
    delta = 2.0**-18


# -- the sequence utilities ------------------------------------------------------------------------------

class PadSequenceIgnoresPaddingSide(TorchBackend):
    name = "wrong-pad-sequence-padding-side"

    def call_target(self, case, fn, args, kwargs):
        if fn is rnn_utils.pad_sequence:
            kwargs = {k: v for k, v in kwargs.items() if k != "padding_side"}
        return super().call_target(case, fn, args, kwargs)


def _pack_rows_unsorted(sequences, enforce_sorted=True):
    """pack_sequence that sorts the lengths but takes each step's first batch_sizes[t] rows in the
    caller's order."""
    lengths = torch.as_tensor([len(s) for s in sequences])
    order = torch.sort(lengths, descending=True, stable=True).indices
    padded = rnn_utils.pad_sequence(sequences)
    sizes = torch.stack([(lengths > t).sum() for t in range(padded.shape[0])])
    data = torch.cat([padded[t, :int(sizes[t])] for t in range(padded.shape[0])])
    return PackedSequence(data, sizes, order, torch.argsort(order))


class PackSequenceRowsUnsorted(TorchBackend):
    name = "wrong-pack-sequence-rows-unsorted"

    def call_target(self, case, fn, args, kwargs):
        if fn is rnn_utils.pack_sequence and not kwargs.get("enforce_sorted", True):
            return _pack_rows_unsorted(*args, **kwargs)
        return super().call_target(case, fn, args, kwargs)


class UnpadSequenceBatchFirstInverted(TorchBackend):
    name = "wrong-unpad-sequence-batch-first"

    def call_target(self, case, fn, args, kwargs):
        if fn is rnn_utils.unpad_sequence:
            kwargs = {**kwargs, "batch_first": not kwargs.get("batch_first", False)}
        return super().call_target(case, fn, args, kwargs)


class UnpackSequenceSortedOrder(TorchBackend):
    name = "wrong-unpack-sequence-sorted-order"

    def call_target(self, case, fn, args, kwargs):
        if fn is rnn_utils.unpack_sequence:
            packed_in = args[0]
            padded, lengths = pad_packed_sequence(PackedSequence(packed_in.data, packed_in.batch_sizes),
                                                  batch_first=True)
            return rnn_utils.unpad_sequence(padded, lengths, batch_first=True)
        return super().call_target(case, fn, args, kwargs)
