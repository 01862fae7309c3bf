"""Convolutions: Conv1d/2d/3d and ConvTranspose1d/2d/3d (template: conformance.families.window)."""

from conformance.families.window import window
from conformance.spec import declare

for _nd in (1, 2, 3):
    declare(window(f"Conv{_nd}d", "direct", _nd, notes=(
        "padding='same' splits d·(k-1) as (total//2, total - total//2) (extra on the right). A padding_mode "
        "other than zeros pads explicitly (F.pad with the module's amounts) and convolves without padding. "
        "Tolerance: K = (C_in/G)·Π k (+1 with bias) for the output, (C_out/G)·Π k times the padded copies of "
        "an element for the input gradient, N·Π out for the weight and bias gradients; bit-exact in the "
        "exact tier. Not exercised: negative padding with a non-zero padding_mode (torch crops; undocumented, "
        "the reference rejects it); device/dtype constructor arguments; expanded (stride-0) layouts.")))
    declare(window(f"ConvTranspose{_nd}d", "transposed", _nd, notes=(
        "The adjoint of the convolution w.r.t. its input; output_size (spatial sizes, optionally with N and "
        "C in front) selects output_padding = size - min in [0, stride) and overrides the constructor's. "
        "Not exercised: padding_mode other than zeros (torch rejects it: an invalid case) and padding="
        "'same'/'valid' (the constructor accepts the string, forward fails); expanded layouts.")))
