"""ctypes declarations of the C API in include/bnorm.h and the loader.

Nothing here needs a compiler: the structures mirror the header field by field
(python/tests/test_abi.py checks sizes and offsets against a C compiler when
one is available).

The shared library is looked up in this order:
  1. the file named by the environment variable BNORM_LIBRARY;
  2. libbnorm.so inside this package (what `pip install` puts there);
  3. the repository's build directories build/ and build-py/ (where
     `cmake -S python -B build-py` puts it), for a source checkout.
"""
from __future__ import annotations

import ctypes
import os
import sys
from ctypes import (CFUNCTYPE, POINTER, Structure, c_bool, c_char, c_char_p,
                    c_double, c_int, c_int64, c_size_t, c_uint64,
                    c_void_p)

BNORM_MAX_RANK = 8
BNORM_MAX_NAME = 127

# bnorm_status
OK = 0
ERR_NULL_ARGUMENT = 1
ERR_INVALID_CONFIG = 2
ERR_INVALID_ARGUMENT = 3
ERR_SHAPE = 4
ERR_STATE = 5
ERR_OVERFLOW = 6
ERR_OUT_OF_MEMORY = 7
ERR_CALLBACK = 8
ERR_NOT_FOUND = 9
ERR_IO = 10
ERR_CORRUPT = 11
ERR_UNSUPPORTED = 12

# enums
INIT_ZEROS, INIT_ONES, INIT_CONSTANT, INIT_RANDOM_NORMAL, INIT_RANDOM_UNIFORM, \
    INIT_TRUNCATED_NORMAL, INIT_CALLBACK = range(7)
REG_NONE, REG_L1, REG_L2, REG_L1L2, REG_CALLBACK = range(5)
CONSTRAINT_NONE, CONSTRAINT_NON_NEG, CONSTRAINT_UNIT_NORM, CONSTRAINT_MAX_NORM, \
    CONSTRAINT_MIN_MAX_NORM, CONSTRAINT_CALLBACK = range(6)
BEHAVIOR_KERAS, BEHAVIOR_COMPAT_V1 = range(2)
FUSED_AUTO, FUSED_TRUE, FUSED_FALSE = range(3)

c_double_p = POINTER(c_double)
c_int64_p = POINTER(c_int64)

# Callbacks exchange doubles whatever the layer's dtype.
INITIALIZER_FN = CFUNCTYPE(c_int, c_double_p, c_size_t, c_int64_p, c_int,
                           c_void_p)
REGULARIZER_FN = CFUNCTYPE(c_int, c_double_p, c_size_t, c_double_p,
                           c_double_p, c_void_p)
CONSTRAINT_FN = CFUNCTYPE(c_int, c_double_p, c_size_t, c_int64_p, c_int,
                          c_void_p)
ADJUSTMENT_FN = CFUNCTYPE(c_int, c_int64_p, c_int, c_double_p, c_double_p,
                          c_size_t, c_void_p)

# bnorm_dtype
FLOAT32 = 0
FLOAT64 = 1


class Initializer(Structure):
    _fields_ = [
        ("kind", c_int),
        ("value", c_double),
        ("mean", c_double),
        ("stddev", c_double),
        ("minval", c_double),
        ("maxval", c_double),
        ("has_seed", c_bool),
        ("seed", c_uint64),
        ("fn", INITIALIZER_FN),
        ("user_data", c_void_p),
        ("name", c_char_p),
    ]


class Regularizer(Structure):
    _fields_ = [
        ("kind", c_int),
        ("l1", c_double),
        ("l2", c_double),
        ("fn", REGULARIZER_FN),
        ("user_data", c_void_p),
        ("name", c_char_p),
    ]


class Constraint(Structure):
    _fields_ = [
        ("kind", c_int),
        ("min_value", c_double),
        ("max_value", c_double),
        ("rate", c_double),
        ("axis", c_int * (BNORM_MAX_RANK + 1)),
        ("axis_count", c_int),
        ("fn", CONSTRAINT_FN),
        ("user_data", c_void_p),
        ("name", c_char_p),
    ]


class Config(Structure):
    _fields_ = [
        ("behavior", c_int),
        ("dtype", c_int),
        ("axis", c_int * BNORM_MAX_RANK),
        ("axis_count", c_int),
        ("axis_is_list", c_bool),
        ("momentum", c_double),
        ("epsilon", c_double),
        ("center", c_bool),
        ("scale", c_bool),
        ("beta_initializer", Initializer),
        ("gamma_initializer", Initializer),
        ("moving_mean_initializer", Initializer),
        ("moving_variance_initializer", Initializer),
        ("beta_regularizer", Regularizer),
        ("gamma_regularizer", Regularizer),
        ("beta_constraint", Constraint),
        ("gamma_constraint", Constraint),
        ("renorm", c_bool),
        ("renorm_clipping_has_rmax", c_bool),
        ("renorm_clipping_has_rmin", c_bool),
        ("renorm_clipping_has_dmax", c_bool),
        ("renorm_clipping_rmax", c_double),
        ("renorm_clipping_rmin", c_double),
        ("renorm_clipping_dmax", c_double),
        ("renorm_momentum", c_double),
        ("fused", c_int),
        ("trainable", c_bool),
        ("virtual_batch_size", c_int64),
        ("adjustment", ADJUSTMENT_FN),
        ("adjustment_user_data", c_void_p),
        ("name", c_char * (BNORM_MAX_NAME + 1)),
        ("fused_epsilon_floor", c_bool),
    ]


class CustomObjects(Structure):
    _fields_ = [
        ("initializers", POINTER(Initializer)),
        ("initializer_count", c_size_t),
        ("regularizers", POINTER(Regularizer)),
        ("regularizer_count", c_size_t),
        ("constraints", POINTER(Constraint)),
        ("constraint_count", c_size_t),
    ]


class VariableInfo(Structure):
    _fields_ = [
        ("name", c_char_p),
        ("short_name", c_char_p),
        ("shape", c_int64 * (BNORM_MAX_RANK + 1)),
        ("rank", c_int),
        ("count", c_size_t),
        ("trainable", c_bool),
    ]


class ForwardArgs(Structure):
    _fields_ = [
        ("x", c_void_p),
        ("y", c_void_p),
        ("shape", c_int64_p),
        ("rank", c_int),
        ("training", c_bool),
        ("pending", c_void_p),
        ("saved", c_void_p),
    ]


class BackwardArgs(Structure):
    _fields_ = [
        ("saved", c_void_p),
        ("x", c_void_p),
        ("dy", c_void_p),
        ("shape", c_int64_p),
        ("rank", c_int),
        ("dx", c_void_p),
        ("dgamma", c_void_p),
        ("dbeta", c_void_p),
    ]


# name: (restype, argtypes)
_PROTOTYPES = {
    "bnorm_status_name": (c_char_p, [c_int]),
    "bnorm_last_error": (c_char_p, []),
    "bnorm_set_num_threads": (c_int, [c_int]),
    "bnorm_get_num_threads": (c_int, []),
    "bnorm_set_small_calls": (c_int, [c_int]),
    "bnorm_get_small_calls": (c_int, []),
    "bnorm_set_max_isa": (c_int, [c_int]),
    "bnorm_get_isa": (c_int, []),
    "bnorm_isa_name": (c_char_p, [c_int]),
    "bnorm_config_init": (None, [POINTER(Config)]),
    "bnorm_config_validate": (c_int, [POINTER(Config)]),
    "bnorm_config_to_json": (c_int, [POINTER(Config), c_char_p, c_size_t,
                                     POINTER(c_size_t)]),
    "bnorm_config_from_json": (c_int, [c_char_p, POINTER(Config),
                                       POINTER(CustomObjects)]),
    "bnorm_layer_create": (c_int, [POINTER(Config), POINTER(c_void_p)]),
    "bnorm_layer_destroy": (None, [c_void_p]),
    "bnorm_layer_config": (POINTER(Config), [c_void_p]),
    "bnorm_layer_get_config": (c_int, [c_void_p, c_char_p, c_size_t,
                                       POINTER(c_size_t)]),
    "bnorm_layer_build": (c_int, [c_void_p, c_int64_p, c_int]),
    "bnorm_layer_is_built": (c_bool, [c_void_p]),
    "bnorm_layer_is_fused": (c_bool, [c_void_p]),
    "bnorm_layer_set_trainable": (c_int, [c_void_p, c_bool]),
    "bnorm_layer_channels": (c_size_t, [c_void_p]),
    "bnorm_layer_variable_count": (c_size_t, [c_void_p]),
    "bnorm_layer_variable_info": (c_int, [c_void_p, c_size_t,
                                          POINTER(VariableInfo)]),
    "bnorm_layer_find_variable": (c_int, [c_void_p, c_char_p,
                                          POINTER(c_size_t)]),
    "bnorm_layer_variable_data": (c_void_p, [c_void_p, c_size_t]),
    "bnorm_layer_get_variable": (c_int, [c_void_p, c_size_t, c_void_p,
                                         c_size_t]),
    "bnorm_layer_set_variable": (c_int, [c_void_p, c_size_t, c_void_p,
                                         c_size_t]),
    "bnorm_layer_weights_count": (c_size_t, [c_void_p]),
    "bnorm_layer_get_weights": (c_int, [c_void_p, c_void_p, c_size_t]),
    "bnorm_layer_set_weights": (c_int, [c_void_p, c_void_p, c_size_t]),
    "bnorm_updates_create": (c_int, [POINTER(c_void_p)]),
    "bnorm_updates_destroy": (None, [c_void_p]),
    "bnorm_updates_count": (c_size_t, [c_void_p]),
    "bnorm_updates_clear": (None, [c_void_p]),
    "bnorm_layer_apply_updates": (c_int, [c_void_p, c_void_p]),
    "bnorm_saved_create": (c_int, [POINTER(c_void_p)]),
    "bnorm_saved_destroy": (None, [c_void_p]),
    "bnorm_layer_forward": (c_int, [c_void_p, POINTER(ForwardArgs)]),
    "bnorm_layer_backward": (c_int, [c_void_p, POINTER(BackwardArgs)]),
    "bnorm_layer_regularization_losses": (c_int, [c_void_p, POINTER(c_double),
                                                  c_size_t,
                                                  POINTER(c_size_t)]),
    "bnorm_layer_add_regularization_gradients": (c_int, [c_void_p, c_void_p,
                                                         c_void_p]),
    "bnorm_layer_apply_constraints": (c_int, [c_void_p]),
    "bnorm_layer_save": (c_int, [c_void_p, c_char_p]),
    "bnorm_layer_load": (c_int, [c_void_p, c_char_p]),
    "bnorm_layer_save_to_buffer": (c_int, [c_void_p, c_void_p, c_size_t,
                                           POINTER(c_size_t)]),
    "bnorm_layer_load_from_buffer": (c_int, [c_void_p, c_void_p, c_size_t]),
}

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_REPO_ROOT = os.path.dirname(os.path.dirname(_PACKAGE_DIR))
LIBRARY_NAME = "libbnorm.dylib" if sys.platform == "darwin" else "libbnorm.so"


def candidate_paths():
    """Where the shared library is looked for, in order."""
    env = os.environ.get("BNORM_LIBRARY")
    if env:
        return [env]
    paths = [os.path.join(_PACKAGE_DIR, LIBRARY_NAME)]
    for d in ("build", "build-py", os.path.join("build-py", "bnorm_c")):
        paths.append(os.path.join(_REPO_ROOT, d, LIBRARY_NAME))
    return paths


class LibraryNotFound(ImportError):
    pass


def _open(path):
    lib = ctypes.CDLL(path)
    if not hasattr(lib, "bnorm_layer_create"):
        missing = [n for n in _PROTOTYPES if not hasattr(lib, n)]
        raise LibraryNotFound(
            "%s does not export the bnorm C API (missing %s%s). A library "
            "built by the project's CMakeLists.txt alone is compiled with "
            "hidden visibility and exports nothing; build it with `pip "
            "install .` or `cmake -S python -B build-py && cmake --build "
            "build-py --target bnorm`." %
            (path, ", ".join(missing[:3]), " ..." if len(missing) > 3 else ""))
    for name, (restype, argtypes) in _PROTOTYPES.items():
        if not hasattr(lib, name):  # an older library: fails when used
            continue
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes
    lib.path = path
    return lib


def load():
    errors = []
    explicit = bool(os.environ.get("BNORM_LIBRARY"))
    for path in candidate_paths():
        if not explicit and not os.path.exists(path):
            continue
        try:
            return _open(path)
        except (OSError, LibraryNotFound) as e:
            errors.append("%s: %s" % (path, e))
    raise LibraryNotFound(
        "could not load the bnorm shared library. Install the package with "
        "`pip install .` from the repository (it builds libbnorm.so), or set "
        "BNORM_LIBRARY to the path of a libbnorm.so that exports the C API.\n"
        + ("\n".join(errors) if errors else
           "No candidate found among: " + ", ".join(candidate_paths())))


lib = load()
