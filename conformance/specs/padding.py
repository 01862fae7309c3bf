"""Padding modules (template: conformance.families.copies.padding; conventions: reference.padding)."""

from conformance.families.copies import padding
from conformance.spec import declare

declare(padding("ZeroPad1d", "zeros", 1, notes="Input (C, W), (N, C, W) or any leading dims (torch pads the "
                                               "last dim of any tensor of 1+ dims)."))
declare(padding("ZeroPad2d", "zeros", 2, notes="Input (C, H, W), (N, C, H, W) or any leading dims (2+ dims)."))
declare(padding("ZeroPad3d", "zeros", 3, notes="Input (C, D, H, W), (N, C, D, H, W) or any leading dims "
                                               "(3+ dims)."))
declare(padding("ConstantPad1d", "constant", 1, notes="Input (C, W), (N, C, W) or any leading dims (1+ dims)."))
declare(padding("ConstantPad2d", "constant", 2, notes="Input (C, H, W), (N, C, H, W) or any leading dims "
                                                      "(2+ dims)."))
declare(padding("ConstantPad3d", "constant", 3, notes="Input (C, D, H, W), (N, C, D, H, W) or any leading dims "
                                                      "(3+ dims)."))
declare(padding("ReflectionPad1d", "reflect", 1, notes="Input (C, W) or (N, C, W)."))
declare(padding("ReflectionPad2d", "reflect", 2, notes="Input (C, H, W) or (N, C, H, W)."))
declare(padding("ReflectionPad3d", "reflect", 3, notes="Input (C, D, H, W) or (N, C, D, H, W)."))
declare(padding("ReplicationPad1d", "replicate", 1, notes="Input (C, W) or (N, C, W)."))
declare(padding("ReplicationPad2d", "replicate", 2, notes="Input (C, H, W) or (N, C, H, W)."))
declare(padding("ReplicationPad3d", "replicate", 3, notes="Input (C, D, H, W) or (N, C, D, H, W)."))
declare(padding("CircularPad1d", "circular", 1, notes="Input (C, W) or (N, C, W): the module refuses other ranks."))
declare(padding("CircularPad2d", "circular", 2, notes="Input (C, H, W) or (N, C, H, W)."))
declare(padding("CircularPad3d", "circular", 3, notes="Input (C, D, H, W) or (N, C, D, H, W)."))
