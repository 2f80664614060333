"""Initializers, regularizers and constraints, in every form Keras accepts.

A constructor argument such as ``gamma_initializer`` may be
  * a Keras name: "zeros", "Ones", "random_normal", "l2", "max_norm", ...;
  * a serialized object: {"class_name": "RandomNormal", "config": {...}}
    (the "module" and "registered_name" keys of tf_keras 2.x are accepted);
  * an object with get_config() whose class is a Keras built-in (e.g. a
    ``tf_keras.initializers.RandomNormal(stddev=0.1)`` instance or one of the
    classes below) -- it is mapped to the same built-in of the C library;
  * any other Python callable, run by the C library through a callback:
      initializer(shape, dtype="float32") -> array of `shape`
      regularizer(weight) -> scalar loss; an optional method
          regularizer.gradient(weight) -> array enables its gradient
      constraint(weight) -> projected array of the same shape.

Keras' Zeros, Ones, Constant, RandomNormal, RandomUniform, TruncatedNormal,
L1, L2, L1L2, NonNeg, UnitNorm, MaxNorm and MinMaxNorm run in C. The
VarianceScaling family (glorot_*, he_*, lecun_*) runs in Python with numpy.
Random initializers draw from bnorm's (or numpy's) generator, not
TensorFlow's: the same distribution, different numbers.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from . import _lib


def _float32(v):
    # Keras regularizers store their factors as float32 (cast_to_floatx).
    return float(np.float32(v))


class _KerasObject:
    """A Keras built-in: class_name + config, serialized as tf_keras does."""

    module = "keras"
    class_name = ""
    _defaults = {}

    def __init__(self, **config):
        unknown = set(config) - set(self._defaults)
        if unknown:
            raise TypeError("%s got unexpected arguments %s" %
                            (self.class_name, sorted(unknown)))
        self._config = dict(self._defaults)
        self._config.update(config)

    def get_config(self):
        return dict(self._config)

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return "%s(%s)" % (self.class_name, ", ".join(
            "%s=%r" % kv for kv in self._config.items()))

    def __eq__(self, other):
        return (type(self) is type(other) and
                self._config == other._config)

    __hash__ = object.__hash__


# ---------------------------------------------------------------- initializers


class Initializer(_KerasObject):
    module = "keras.initializers"

    def c_struct(self):
        """The C built-in, or None when the initializer runs in Python."""
        return None


def _seeded(init, seed):
    if seed is not None:
        init.has_seed = True
        init.seed = int(seed) & 0xFFFFFFFFFFFFFFFF
    return init


class Zeros(Initializer):
    class_name = "Zeros"

    def c_struct(self):
        return _lib.Initializer(kind=_lib.INIT_ZEROS)


class Ones(Initializer):
    class_name = "Ones"

    def c_struct(self):
        return _lib.Initializer(kind=_lib.INIT_ONES)


class Constant(Initializer):
    class_name = "Constant"
    _defaults = {"value": 0}

    def c_struct(self):
        value = self._config["value"]
        if np.ndim(value) != 0:
            raise ValueError(
                "Constant initializer: bnorm supports a scalar value only, "
                "got an array of shape %s" % (np.shape(value),))
        return _lib.Initializer(kind=_lib.INIT_CONSTANT, value=float(value))


class RandomNormal(Initializer):
    class_name = "RandomNormal"
    _defaults = {"mean": 0.0, "stddev": 0.05, "seed": None}

    def c_struct(self):
        c = self._config
        return _seeded(_lib.Initializer(kind=_lib.INIT_RANDOM_NORMAL,
                                        mean=float(c["mean"]),
                                        stddev=float(c["stddev"])), c["seed"])


class RandomUniform(Initializer):
    class_name = "RandomUniform"
    _defaults = {"minval": -0.05, "maxval": 0.05, "seed": None}

    def c_struct(self):
        c = self._config
        return _seeded(_lib.Initializer(kind=_lib.INIT_RANDOM_UNIFORM,
                                        minval=float(c["minval"]),
                                        maxval=float(c["maxval"])), c["seed"])


class TruncatedNormal(Initializer):
    class_name = "TruncatedNormal"
    _defaults = {"mean": 0.0, "stddev": 0.05, "seed": None}

    def c_struct(self):
        c = self._config
        return _seeded(_lib.Initializer(kind=_lib.INIT_TRUNCATED_NORMAL,
                                        mean=float(c["mean"]),
                                        stddev=float(c["stddev"])), c["seed"])


def _compute_fans(shape):
    shape = tuple(shape)
    if len(shape) < 1:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = int(np.prod(shape[:-2]))
    return shape[-2] * receptive, shape[-1] * receptive


class VarianceScaling(Initializer):
    """Keras' VarianceScaling, computed in Python with numpy."""

    class_name = "VarianceScaling"

    def __init__(self, scale=1.0, mode="fan_in",
                 distribution="truncated_normal", seed=None):
        self._setup(scale, mode, distribution, seed)
        self._config = {"scale": scale, "mode": mode,
                        "distribution": distribution, "seed": seed}

    def _setup(self, scale, mode, distribution, seed):
        if scale <= 0.0:
            raise ValueError("`scale` must be positive. Received: scale=%s" %
                             scale)
        if mode not in ("fan_in", "fan_out", "fan_avg"):
            raise ValueError("Invalid `mode` argument: %r" % (mode,))
        dist = distribution.lower()
        if dist == "normal":
            dist = "truncated_normal"
        if dist not in ("uniform", "truncated_normal", "untruncated_normal"):
            raise ValueError("Invalid `distribution` argument: %r" %
                             (distribution,))
        self._params = (float(scale), mode, dist)
        self._rng = np.random.default_rng(seed)

    def __call__(self, shape, dtype="float32"):
        scale, mode, dist = self._params
        fan_in, fan_out = _compute_fans(shape)
        if mode == "fan_in":
            scale /= max(1.0, fan_in)
        elif mode == "fan_out":
            scale /= max(1.0, fan_out)
        else:
            scale /= max(1.0, (fan_in + fan_out) / 2.0)
        if dist == "truncated_normal":
            stddev = math.sqrt(scale) / 0.87962566103423978
            values = self._rng.normal(0.0, stddev, size=shape)
            bad = np.abs(values) > 2 * stddev
            while bad.any():
                values[bad] = self._rng.normal(0.0, stddev,
                                               size=int(bad.sum()))
                bad = np.abs(values) > 2 * stddev
        elif dist == "untruncated_normal":
            values = self._rng.normal(0.0, math.sqrt(scale), size=shape)
        else:
            limit = math.sqrt(3.0 * scale)
            values = self._rng.uniform(-limit, limit, size=shape)
        return values.astype(dtype)


def _variance_scaling_alias(name, scale, mode, distribution):
    def __init__(self, seed=None):
        self._setup(scale, mode, distribution, seed)
        self._config = {"seed": seed}

    return type(name, (VarianceScaling,),
                {"class_name": name, "__init__": __init__})


GlorotUniform = _variance_scaling_alias("GlorotUniform", 1.0, "fan_avg",
                                        "uniform")
GlorotNormal = _variance_scaling_alias("GlorotNormal", 1.0, "fan_avg",
                                       "truncated_normal")
HeNormal = _variance_scaling_alias("HeNormal", 2.0, "fan_in",
                                   "truncated_normal")
HeUniform = _variance_scaling_alias("HeUniform", 2.0, "fan_in", "uniform")
LecunNormal = _variance_scaling_alias("LecunNormal", 1.0, "fan_in",
                                      "truncated_normal")
LecunUniform = _variance_scaling_alias("LecunUniform", 1.0, "fan_in",
                                       "uniform")

_INITIALIZERS = {c.class_name: c for c in (
    Zeros, Ones, Constant, RandomNormal, RandomUniform, TruncatedNormal,
    VarianceScaling, GlorotUniform, GlorotNormal, HeNormal, HeUniform,
    LecunNormal, LecunUniform)}
_INITIALIZER_ALIASES = {
    "zeros": "Zeros", "zero": "Zeros", "ones": "Ones", "one": "Ones",
    "constant": "Constant", "random_normal": "RandomNormal",
    "normal": "RandomNormal", "random_uniform": "RandomUniform",
    "uniform": "RandomUniform", "truncated_normal": "TruncatedNormal",
    "variance_scaling": "VarianceScaling", "glorot_uniform": "GlorotUniform",
    "glorot_normal": "GlorotNormal", "he_normal": "HeNormal",
    "he_uniform": "HeUniform", "lecun_normal": "LecunNormal",
    "lecun_uniform": "LecunUniform",
}

# ---------------------------------------------------------------- regularizers


class Regularizer(_KerasObject):
    module = "keras.regularizers"

    def c_struct(self):
        raise NotImplementedError

    def __call__(self, x):
        x = np.asarray(x)
        dtype = x.dtype.type if x.dtype == np.float64 else np.float32
        x = x.astype(dtype)
        c = self._config
        loss = dtype(0.0)
        # Keras keeps its coefficients as float32 (cast_to_floatx).
        if c.get("l1"):
            loss += dtype(np.float32(c["l1"])) * np.sum(np.abs(x))
        if c.get("l2"):
            loss += dtype(np.float32(c["l2"])) * np.sum(np.square(x))
        return loss


class L1(Regularizer):
    class_name = "L1"
    _defaults = {"l1": 0.01}

    def __init__(self, l1=0.01):
        super().__init__(l1=_float32(l1))

    def c_struct(self):
        return _lib.Regularizer(kind=_lib.REG_L1, l1=self._config["l1"])


class L2(Regularizer):
    class_name = "L2"
    _defaults = {"l2": 0.01}

    def __init__(self, l2=0.01):
        super().__init__(l2=_float32(l2))

    def c_struct(self):
        return _lib.Regularizer(kind=_lib.REG_L2, l2=self._config["l2"])


class L1L2(Regularizer):
    class_name = "L1L2"
    _defaults = {"l1": 0.0, "l2": 0.0}

    def __init__(self, l1=0.0, l2=0.0):
        super().__init__(l1=_float32(l1), l2=_float32(l2))

    def c_struct(self):
        return _lib.Regularizer(kind=_lib.REG_L1L2, l1=self._config["l1"],
                                l2=self._config["l2"])


def l1_l2(l1=0.01, l2=0.01):
    return L1L2(l1=l1, l2=l2)


_REGULARIZERS = {c.class_name: c for c in (L1, L2, L1L2)}
_REGULARIZER_ALIASES = {"l1": "L1", "l2": "L2"}

# ---------------------------------------------------------------- constraints


def _axis_list(axis):
    axes = list(axis) if isinstance(axis, (list, tuple)) else [axis]
    if not 1 <= len(axes) <= _lib.BNORM_MAX_RANK + 1:
        raise ValueError("constraint axis: 1 to %d axes are allowed, got %r" %
                         (_lib.BNORM_MAX_RANK + 1, axis))
    return [int(a) for a in axes]


class Constraint(_KerasObject):
    module = "keras.constraints"

    def _base(self, kind):
        c = _lib.Constraint(kind=kind)
        axes = _axis_list(self._config.get("axis", 0))
        for i, a in enumerate(axes):
            c.axis[i] = a
        c.axis_count = len(axes)
        return c


class NonNeg(Constraint):
    class_name = "NonNeg"

    def c_struct(self):
        c = _lib.Constraint(kind=_lib.CONSTRAINT_NON_NEG)
        c.axis_count = 1
        return c


class UnitNorm(Constraint):
    class_name = "UnitNorm"
    _defaults = {"axis": 0}

    def c_struct(self):
        return self._base(_lib.CONSTRAINT_UNIT_NORM)


class MaxNorm(Constraint):
    class_name = "MaxNorm"
    _defaults = {"max_value": 2, "axis": 0}

    def c_struct(self):
        c = self._base(_lib.CONSTRAINT_MAX_NORM)
        c.max_value = float(self._config["max_value"])
        return c


class MinMaxNorm(Constraint):
    class_name = "MinMaxNorm"
    _defaults = {"min_value": 0.0, "max_value": 1.0, "rate": 1.0, "axis": 0}

    def c_struct(self):
        c = self._base(_lib.CONSTRAINT_MIN_MAX_NORM)
        c.min_value = float(self._config["min_value"])
        c.max_value = float(self._config["max_value"])
        c.rate = float(self._config["rate"])
        return c


_CONSTRAINTS = {c.class_name: c for c in (NonNeg, UnitNorm, MaxNorm,
                                          MinMaxNorm)}
_CONSTRAINT_ALIASES = {"non_neg": "NonNeg", "nonneg": "NonNeg",
                       "unit_norm": "UnitNorm", "unitnorm": "UnitNorm",
                       "max_norm": "MaxNorm", "maxnorm": "MaxNorm",
                       "min_max_norm": "MinMaxNorm"}

_KINDS = {
    "initializer": (_INITIALIZERS, _INITIALIZER_ALIASES),
    "regularizer": (_REGULARIZERS, _REGULARIZER_ALIASES),
    "constraint": (_CONSTRAINTS, _CONSTRAINT_ALIASES),
}


def get(kind, identifier, custom_objects=None):
    """Keras' initializers.get / regularizers.get / constraints.get.

    Returns None, a built-in object of this module, or the user's callable.
    """
    classes, aliases = _KINDS[kind]
    custom_objects = custom_objects or {}
    if identifier is None:
        return None
    if isinstance(identifier, _KerasObject):
        return identifier
    if isinstance(identifier, str):
        if identifier in custom_objects:
            return get(kind, custom_objects[identifier], custom_objects)
        if kind == "regularizer" and identifier == "l1_l2":
            return l1_l2()
        name = aliases.get(identifier, identifier)
        if name in classes:
            return classes[name]()
        raise ValueError(
            "Unknown %s: %r. bnorm supports %s, or a Python callable." %
            (kind, identifier, ", ".join(sorted(set(classes) | set(aliases)))))
    if isinstance(identifier, dict):
        if "class_name" not in identifier:
            raise ValueError("Could not interpret serialized %s: %r" %
                             (kind, identifier))
        name = identifier["class_name"]
        config = identifier.get("config") or {}
        if name in custom_objects:
            obj = custom_objects[name]
            if isinstance(obj, type):
                return obj.from_config(config) if hasattr(
                    obj, "from_config") else obj(**config)
            return obj
        if name == "function" and isinstance(config, str) and \
                config in custom_objects:
            return custom_objects[config]
        if kind == "regularizer" and name == "l1_l2":
            return l1_l2(**config)
        name = aliases.get(name, name)
        if name not in classes:
            raise ValueError(
                "Unknown %s: %r. Pass it in custom_objects, or use one of %s."
                % (kind, identifier["class_name"], ", ".join(sorted(classes))))
        config = {k: v for k, v in config.items() if k != "dtype"}
        return classes[name].from_config(config)
    if callable(identifier):
        # A Keras (or Keras-like) built-in instance maps to our built-in.
        cls_name = type(identifier).__name__
        if cls_name in classes and hasattr(identifier, "get_config") and \
                not isinstance(identifier, type):
            try:
                config = dict(identifier.get_config())
            except Exception:  # not Keras-like after all
                return identifier
            config.pop("dtype", None)
            try:
                return classes[cls_name].from_config(config)
            except TypeError:
                return identifier
        if isinstance(identifier, type):
            return identifier()
        return identifier
    raise ValueError("Could not interpret %s identifier: %r" %
                     (kind, identifier))


def serialize(obj):
    """tf_keras' serialize_keras_object for an object returned by get()."""
    if obj is None:
        return None
    if isinstance(obj, _KerasObject):
        return {"module": obj.module, "class_name": obj.class_name,
                "config": obj.get_config(), "registered_name": None}
    if hasattr(obj, "get_config"):
        return {"module": type(obj).__module__,
                "class_name": type(obj).__name__,
                "config": obj.get_config(),
                "registered_name": type(obj).__name__}
    name = getattr(obj, "__name__", type(obj).__name__)
    return {"module": getattr(obj, "__module__", None), "class_name":
            "function", "config": name, "registered_name": "function"}
