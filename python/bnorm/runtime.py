"""Process-wide settings of the C library: threads, small calls and
instruction sets."""
from __future__ import annotations

from . import _lib
from .errors import error_for

lib = _lib.lib

# bnorm_isa, lowest first
ISAS = ("scalar", "avx2", "avx512")


def set_num_threads(threads):
    """Threads the operators may use, the caller's included; 0 restores the
    default ($BNORM_NUM_THREADS, else the CPUs online). Results are
    bit-identical for every count."""
    status = lib.bnorm_set_num_threads(int(threads))
    if status != _lib.OK:
        raise error_for(status)


def get_num_threads():
    return int(lib.bnorm_get_num_threads())


# bnorm_small_calls
SMALL_CALLS = ("choose", "share")


def set_small_calls(mode):
    """How a call on at most 2**17 elements, with two threads or more, takes
    its threads: "choose" (the default) runs it on all of them or on the
    calling thread alone, whichever that thread has timed faster lately for
    the layer, pass and size; "share" always uses all of them. Results are
    the same bits either way. $BNORM_SMALL_CALLS=share sets the first
    value."""
    if mode not in SMALL_CALLS:
        raise ValueError("set_small_calls: %r is not one of %s" %
                         (mode, SMALL_CALLS))
    status = lib.bnorm_set_small_calls(SMALL_CALLS.index(mode))
    if status != _lib.OK:
        raise error_for(status)


def get_small_calls():
    return SMALL_CALLS[lib.bnorm_get_small_calls()]


def set_max_isa(name):
    """Caps the instruction set of the float32 kernels: "scalar", "avx2" or
    "avx512". The kernels use the best level at or below the cap that the
    CPU has. Do not call it while another thread runs a layer."""
    if name not in ISAS:
        raise ValueError("set_max_isa: %r is not one of %s" % (name, ISAS))
    status = lib.bnorm_set_max_isa(ISAS.index(name))
    if status != _lib.OK:
        raise error_for(status)


def get_isa():
    """The instruction set the kernels use now."""
    return lib.bnorm_isa_name(lib.bnorm_get_isa()).decode()
