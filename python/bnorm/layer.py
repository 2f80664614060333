"""bnorm.BatchNormalization: tf_keras.layers.BatchNormalization over the C library."""
from __future__ import annotations

import ctypes
import json
import numbers
import os
import threading
import warnings
from ctypes import byref, c_double, c_size_t, c_void_p

import numpy as np

from . import _lib
from . import objects
from .errors import CallbackError, error_for

lib = _lib.lib

_F32 = np.dtype(np.float32)
_F16 = np.dtype(np.float16)
_F64 = np.dtype(np.float64)

# Keras' backend.unique_object_name: batch_normalization, batch_normalization_1 ...
_name_lock = threading.Lock()
_name_counts = {}


def _unique_name(base):
    with _name_lock:
        n = _name_counts.get(base, 0)
        _name_counts[base] = n + 1
    return base if n == 0 else "%s_%d" % (base, n)


def clear_session():
    """Resets default layer names, as tf_keras.backend.clear_session() does."""
    with _name_lock:
        _name_counts.clear()


def _check(status, callbacks=None):
    if status == _lib.OK:
        return
    err = error_for(status)
    pending = callbacks.pop_error() if callbacks is not None else None
    if pending is not None:
        if hasattr(pending, "add_note"):
            pending.add_note("(bnorm: %s)" % err)
        raise pending
    raise err


def _ptr(a):
    # The address alone: data_as(c_void_p) cost a call on a small tensor
    # about a third of the binding's own time. Every caller keeps `a` in a
    # local name for the duration of the C call.
    return a.ctypes.data if a is not None else None


def _shape_array(shape):
    return (ctypes.c_int64 * max(len(shape), 1))(*shape)


# ------------------------------------------------------------------ dtype policy

class _Policy:
    """The part of a Keras dtype policy that BatchNormalization uses.

    compute is float32, float64 or float16; the C layer (its variables and
    math) is float64 for float64 and float32 otherwise: for float16 it
    computes in float32 and casts the output back, as Keras does for 16-bit
    inputs. None = inferred from the first input (tf.compat.v1.layers)."""

    def __init__(self, name, compute):
        self.name = name          # "float32", "float64", "float16", "mixed_float16"
        self.compute = compute    # np.dtype or None (infer)

    @property
    def variable(self):
        """The C layer's dtype (numpy), float32 until inferred."""
        # (not `compute == _F64`: numpy reads None as float64)
        return _F64 if self.compute is not None and self.compute == _F64 \
            else _F32

    def config(self):
        if self.name == "mixed_float16":
            return {"module": "keras.mixed_precision", "class_name": "Policy",
                    "config": {"name": self.name}, "registered_name": None}
        return self.name


_UNSUPPORTED_DTYPE = (
    "bnorm computes in float32 or float64, so a layer of dtype %r cannot be "
    "reproduced. Use dtype='float32' or 'float64' (inputs of any float dtype "
    "are cast to it, as tf_keras does), or 'float16' / 'mixed_float16' "
    "(float32 math, float16 output).")


def _policy_from(dtype, infer):
    if dtype is None:
        return _Policy(None, None) if infer else _Policy("float32", _F32)
    name = dtype
    if isinstance(dtype, dict):
        name = (dtype.get("config") or {}).get("name", dtype.get("class_name"))
    elif not isinstance(dtype, str):
        name = getattr(dtype, "name", None)
        if name is None:
            try:
                name = np.dtype(dtype).name
            except TypeError:
                raise TypeError("Invalid dtype: %r" % (dtype,)) from None
    if name == "float32":
        return _Policy("float32", _F32)
    if name in ("float64", "double"):
        return _Policy("float64", _F64)
    if name in ("float16", "mixed_float16", "half"):
        return _Policy("float16" if name == "half" else name, _F16)
    raise TypeError(_UNSUPPORTED_DTYPE % (name,))


# ------------------------------------------------------------------ callbacks

class _Callbacks:
    """Keeps ctypes callbacks (and the bytes they point to) alive and carries
    a Python exception raised inside one back to the caller."""

    def __init__(self):
        self.keep = []
        self.error = None

    def pop_error(self):
        e, self.error = self.error, None
        return e

    def guard(self, fn):
        def wrapper(*args):
            try:
                fn(*args)
                return 0
            except BaseException as e:  # reported after the C call returns
                self.error = e
                return 1
        return wrapper

    def name(self, text):
        b = text.encode("utf-8")
        self.keep.append(b)
        return b


def _c_initializer(obj, what, cb):
    if isinstance(obj, objects.Initializer) and obj.c_struct() is not None:
        return obj.c_struct()

    def fill(values, count, shape, rank, user):
        shp = tuple(shape[i] for i in range(rank))
        try:
            out = obj(shp, dtype=cb.dtype.name)
        except TypeError:
            out = obj(shp)
        out = np.asarray(out, dtype=cb.dtype)
        out = np.broadcast_to(out, shp) if out.shape != shp else out
        dst = np.ctypeslib.as_array(values, shape=(count,))
        dst[:] = out.reshape(-1)

    fn = _lib.INITIALIZER_FN(cb.guard(fill))
    cb.keep.append(fn)
    return _lib.Initializer(kind=_lib.INIT_CALLBACK, fn=fn,
                            name=cb.name(_class_name(obj)))


def _class_name(obj):
    if isinstance(obj, objects._KerasObject):
        return obj.class_name
    return getattr(obj, "__name__", type(obj).__name__)


def _c_regularizer(obj, what, cb):
    if obj is None:
        return _lib.Regularizer(kind=_lib.REG_NONE)
    if isinstance(obj, objects.Regularizer):
        return obj.c_struct()

    def run(weight, count, loss, gradient, user):
        w = np.ctypeslib.as_array(weight, shape=(count,)).astype(cb.dtype)
        shaped = w.reshape(cb.param_shape) if cb.param_shape else w
        loss[0] = float(np.asarray(obj(shaped), dtype=np.float64))
        if gradient:
            grad_fn = getattr(obj, "gradient", None)
            if grad_fn is None:
                raise NotImplementedError(
                    "%s: the regularizer %r has no gradient(weight) method, "
                    "so bnorm cannot add its gradient" % (what, obj))
            g = np.asarray(grad_fn(shaped), dtype=cb.dtype).reshape(-1)
            dst = np.ctypeslib.as_array(gradient, shape=(count,))
            dst += g

    fn = _lib.REGULARIZER_FN(cb.guard(run))
    cb.keep.append(fn)
    return _lib.Regularizer(kind=_lib.REG_CALLBACK, fn=fn,
                            name=cb.name(_class_name(obj)))


def _c_constraint(obj, what, cb):
    if obj is None:
        c = _lib.Constraint(kind=_lib.CONSTRAINT_NONE)
        c.axis_count = 1
        return c
    if isinstance(obj, objects.Constraint):
        return obj.c_struct()

    def run(weight, count, shape, rank, user):
        shp = tuple(shape[i] for i in range(rank))
        dst = np.ctypeslib.as_array(weight, shape=(count,))
        out = np.asarray(obj(dst.astype(cb.dtype).reshape(shp)),
                         dtype=cb.dtype)
        dst[:] = np.broadcast_to(out, shp).reshape(-1)

    fn = _lib.CONSTRAINT_FN(cb.guard(run))
    cb.keep.append(fn)
    c = _lib.Constraint(kind=_lib.CONSTRAINT_CALLBACK, fn=fn,
                        name=cb.name(_class_name(obj)))
    c.axis_count = 1
    return c


# ------------------------------------------------------------------ variables

class Variable:
    """A layer variable, as far as a tf.Variable is useful here.

    `name` is Keras' ("batch_normalization/gamma:0"); numpy() returns a copy;
    assign()/assign_add()/assign_sub() write through to the C layer."""

    def __init__(self, layer, index):
        self._layer = layer
        self._index = index
        info = layer._info(index)
        self.name = info.name.decode() + ":0"
        self.short_name = info.short_name.decode()
        self.shape = tuple(info.shape[i] for i in range(info.rank))
        self.dtype = layer._policy.variable
        self._trainable = layer._var_trainable[index]

    @property
    def trainable(self):
        return self._trainable

    def numpy(self):
        return self._layer._get_variable(self._index).reshape(self.shape)

    def value(self):
        return self.numpy()

    def __array__(self, dtype=None, copy=None):
        a = self.numpy()
        return a if dtype is None else a.astype(dtype)

    def assign(self, value):
        value = np.asarray(value, dtype=self.dtype)
        if value.shape != self.shape:
            raise ValueError(
                "Cannot assign value of shape %s to variable %s of shape %s" %
                (value.shape, self.name, self.shape))
        self._layer._set_variable(self._index, value)
        return self

    def assign_add(self, delta):
        return self.assign(self.numpy() + np.asarray(delta, self.dtype))

    def assign_sub(self, delta):
        return self.assign(self.numpy() - np.asarray(delta, self.dtype))

    def __repr__(self):
        return "<bnorm.Variable %r shape=%s dtype=%s, numpy=%r>" % (
            self.name, self.shape, self.dtype.name, self.numpy())


# ------------------------------------------------------------------ the layer

_BASE_KWARGS = {"input_shape", "batch_input_shape", "batch_size", "input_dim",
                "weights", "activity_regularizer", "autocast", "dynamic",
                "dtype", "implementation"}


class BatchNormalization:
    """tf_keras.layers.BatchNormalization (Keras 2 / tf_keras 2.21 rules).

    Constructor arguments, their defaults and accepted forms are Keras'. The
    layer runs on numpy arrays:

        bn = bnorm.BatchNormalization(momentum=0.9)
        y = bn(x, training=True)          # moving statistics updated now
        dx, dgamma, dbeta = bn.backward(dy)

    See the package docstring for what differs from Keras.
    """

    _BEHAVIOR = _lib.BEHAVIOR_KERAS
    _TRAINING_DEFAULT = None

    def __init__(self, axis=-1, momentum=0.99, epsilon=1e-3, center=True,
                 scale=True, beta_initializer="zeros",
                 gamma_initializer="ones", moving_mean_initializer="zeros",
                 moving_variance_initializer="ones", beta_regularizer=None,
                 gamma_regularizer=None, beta_constraint=None,
                 gamma_constraint=None, synchronized=False, *, renorm=False,
                 renorm_clipping=None, renorm_momentum=0.99, fused=None,
                 trainable=True, virtual_batch_size=None, adjustment=None,
                 name=None, **kwargs):
        if synchronized:
            if fused:
                raise ValueError(
                    "`fused=True` is not supported when `synchronized=True`.")
            raise NotImplementedError(
                "synchronized=True (cross-replica batch statistics) is not "
                "supported by bnorm, which runs on one replica; pass "
                "synchronized=False")
        self._init(axis, momentum, epsilon, center, scale, beta_initializer,
                   gamma_initializer, moving_mean_initializer,
                   moving_variance_initializer, beta_regularizer,
                   gamma_regularizer, beta_constraint, gamma_constraint,
                   renorm, renorm_clipping, renorm_momentum, fused, trainable,
                   virtual_batch_size, adjustment, name, kwargs)

    # -------------------------------------------------------------- creation

    def _init(self, axis, momentum, epsilon, center, scale, beta_initializer,
              gamma_initializer, moving_mean_initializer,
              moving_variance_initializer, beta_regularizer,
              gamma_regularizer, beta_constraint, gamma_constraint, renorm,
              renorm_clipping, renorm_momentum, fused, trainable,
              virtual_batch_size, adjustment, name, kwargs):
        self._handle = None
        self._updates = None
        self._saved = None
        custom_objects = kwargs.pop("_custom_objects", None)
        unknown = set(kwargs) - _BASE_KWARGS
        if unknown:
            raise TypeError("Keyword argument not understood:",
                            sorted(unknown)[0])
        if kwargs.get("activity_regularizer") is not None:
            raise NotImplementedError(
                "activity_regularizer is not supported by bnorm")
        if isinstance(axis, (list, tuple)):
            axis_value = axis[:]
            axes = list(axis)
        elif isinstance(axis, numbers.Integral) and not isinstance(axis, bool):
            axis_value = int(axis)
            axes = [int(axis)]
        else:
            raise TypeError(
                "Expected an int or a list/tuple of ints for the argument "
                "'axis', but received: %r" % (axis,))
        for a in axes:
            if not isinstance(a, numbers.Integral) or isinstance(a, bool):
                raise TypeError(
                    "Expected an int or a list/tuple of ints for the argument "
                    "'axis', but received: %r" % (axis,))
        if not 1 <= len(axes) <= _lib.BNORM_MAX_RANK:
            raise ValueError("axis: 1 to %d axes are supported, received %r" %
                             (_lib.BNORM_MAX_RANK, axis))
        for v, what in ((momentum, "momentum"), (epsilon, "epsilon")):
            if not isinstance(v, numbers.Real):
                raise TypeError("%s must be a number, received %r" % (what, v))
        self._policy = _policy_from(kwargs.get("dtype"),
                                    self._BEHAVIOR == _lib.BEHAVIOR_COMPAT_V1)
        self._axis = axis_value
        self.momentum = momentum
        self.epsilon = epsilon
        self.center = bool(center)
        self.scale = bool(scale)
        co = custom_objects
        self.beta_initializer = objects.get("initializer", beta_initializer, co)
        self.gamma_initializer = objects.get("initializer", gamma_initializer,
                                             co)
        self.moving_mean_initializer = objects.get(
            "initializer", moving_mean_initializer, co)
        self.moving_variance_initializer = objects.get(
            "initializer", moving_variance_initializer, co)
        # Keras' add_weight replaces a None initializer by glorot_uniform.
        for attr in ("beta_initializer", "gamma_initializer",
                     "moving_mean_initializer", "moving_variance_initializer"):
            if getattr(self, attr) is None:
                setattr(self, attr, objects.GlorotUniform())
        self.beta_regularizer = objects.get("regularizer", beta_regularizer, co)
        self.gamma_regularizer = objects.get("regularizer", gamma_regularizer,
                                             co)
        self.beta_constraint = objects.get("constraint", beta_constraint, co)
        self.gamma_constraint = objects.get("constraint", gamma_constraint, co)
        self.renorm = bool(renorm)
        self.virtual_batch_size = virtual_batch_size
        self.adjustment = adjustment
        self.synchronized = False
        if virtual_batch_size is not None and (
                not isinstance(virtual_batch_size, numbers.Integral) or
                isinstance(virtual_batch_size, bool)):
            raise TypeError("virtual_batch_size must be an int or None, "
                            "received %r" % (virtual_batch_size,))
        if adjustment is not None and not callable(adjustment):
            raise TypeError("adjustment must be a callable or None")
        if self.renorm:
            renorm_clipping = renorm_clipping or {}
            keys = ["rmax", "rmin", "dmax"]
            if set(renorm_clipping) - set(keys):
                raise ValueError(
                    "Received invalid keys for `renorm_clipping` argument: "
                    "%s. Supported values: %s." % (renorm_clipping, keys))
            self.renorm_clipping = renorm_clipping
            self.renorm_momentum = renorm_momentum
        self._fused_arg = fused
        self._trainable = bool(trainable)
        if name is None:
            name = _unique_name("batch_normalization")
        if not isinstance(name, str):
            raise TypeError("name must be a string, received %r" % (name,))
        if len(name.encode("utf-8")) > _lib.BNORM_MAX_NAME:
            raise ValueError("name: at most %d bytes are supported, %r is "
                             "longer" % (_lib.BNORM_MAX_NAME, name))
        self.name = name
        bis = kwargs.get("batch_input_shape")
        if bis is None and kwargs.get("input_shape") is not None:
            bis = (kwargs.get("batch_size"),) + tuple(kwargs["input_shape"])
        if bis is None and kwargs.get("input_dim") is not None:
            bis = (kwargs.get("batch_size"), kwargs["input_dim"])
        self._batch_input_shape = tuple(bis) if bis is not None else None
        self._initial_weights = kwargs.get("weights")

        self._callbacks = _Callbacks()
        self._callbacks.param_shape = None
        self._callbacks.dtype = self._policy.variable
        self._config = self._make_config(self._trainable)
        self._handle = None
        self._create()
        self._built_shape = None
        self._var_trainable = []
        self._variables = None
        self._last = None

    def _create(self):
        handle = c_void_p()
        _check(lib.bnorm_layer_create(byref(self._config), byref(handle)),
               self._callbacks)
        if self._handle:
            lib.bnorm_layer_destroy(self._handle)
        self._handle = handle

    def _make_config(self, trainable):
        cfg = _lib.Config()
        lib.bnorm_config_init(byref(cfg))
        cb = self._callbacks
        cfg.behavior = self._BEHAVIOR
        cfg.dtype = (_lib.FLOAT64 if self._policy.variable == _F64
                     else _lib.FLOAT32)
        axes = [self._axis] if isinstance(self._axis, int) else list(self._axis)
        for i, a in enumerate(axes):
            cfg.axis[i] = int(a)
        cfg.axis_count = len(axes)
        cfg.axis_is_list = not isinstance(self._axis, int)
        cfg.momentum = float(self.momentum)
        cfg.epsilon = float(self.epsilon)
        cfg.center = self.center
        cfg.scale = self.scale
        for attr in ("beta_initializer", "gamma_initializer",
                     "moving_mean_initializer", "moving_variance_initializer"):
            setattr(cfg, attr, _c_initializer(getattr(self, attr), attr, cb))
        for attr in ("beta_regularizer", "gamma_regularizer"):
            setattr(cfg, attr, _c_regularizer(getattr(self, attr), attr, cb))
        for attr in ("beta_constraint", "gamma_constraint"):
            setattr(cfg, attr, _c_constraint(getattr(self, attr), attr, cb))
        cfg.renorm = self.renorm
        if self.renorm:
            clip = self.renorm_clipping
            for key in ("rmax", "rmin", "dmax"):
                if key in clip and clip[key] is not None:
                    setattr(cfg, "renorm_clipping_has_" + key, True)
                    setattr(cfg, "renorm_clipping_" + key, float(clip[key]))
            cfg.renorm_momentum = float(self.renorm_momentum)
        f = self._fused_arg
        cfg.fused = (_lib.FUSED_AUTO if f is None else
                     _lib.FUSED_TRUE if f else _lib.FUSED_FALSE)
        cfg.trainable = trainable
        vbs = self.virtual_batch_size
        cfg.virtual_batch_size = vbs if vbs is not None and vbs > 0 else 0
        if self.adjustment is not None:
            fn = _lib.ADJUSTMENT_FN(cb.guard(self._run_adjustment))
            cb.keep.append(fn)
            cfg.adjustment = fn
        cfg.name = self.name.encode("utf-8")
        return cfg

    def __del__(self):
        h = getattr(self, "_handle", None)
        if h:
            lib.bnorm_layer_destroy(h)
            self._handle = None
        if getattr(self, "_updates", None):
            lib.bnorm_updates_destroy(self._updates)
            self._updates = None
        if getattr(self, "_saved", None):
            lib.bnorm_saved_destroy(self._saved)
            self._saved = None

    # -------------------------------------------------------------- adjustment

    def _broadcast_param_shape(self):
        """The shape gamma broadcasts to in Keras' call (after _broadcast)."""
        rank = len(self._built_shape)
        axes = self._resolved_axes
        if len(axes) == 1 and axes[0] == rank - 1:
            return (self._built_shape[axes[0]],)
        return tuple(self._built_shape[i] if i in axes else 1
                     for i in range(rank))

    def _run_adjustment(self, shape, rank, scale, bias, channels, user):
        shp = tuple(shape[i] for i in range(rank))
        out = self.adjustment(shp)
        try:
            adj_scale, adj_bias = out
        except (TypeError, ValueError):
            raise TypeError("adjustment must return (scale, bias); got %r" %
                            (out,)) from None
        target = self._broadcast_param_shape()
        dtype = self._policy.variable
        dst_s = np.ctypeslib.as_array(scale, shape=(channels,))
        dst_b = np.ctypeslib.as_array(bias, shape=(channels,))
        for src, dst, what in ((adj_scale, dst_s, "scale"),
                               (adj_bias, dst_b, "bias")):
            a = np.asarray(src, dtype=dtype)
            while a.ndim > len(target) and a.shape[0] == 1:
                a = a[0]
            try:
                a = np.broadcast_to(a, target)
            except ValueError:
                raise ValueError(
                    "adjustment returned a %s of shape %s; bnorm needs one "
                    "value per channel, i.e. a shape that broadcasts to %s "
                    "(the parameters' broadcast shape for this input)" %
                    (what, np.shape(src), target)) from None
            dst[:] = a.reshape(-1)

    # -------------------------------------------------------------- properties

    @property
    def axis(self):
        if not self.built:
            return self._axis
        cfg = lib.bnorm_layer_config(self._handle).contents
        return [cfg.axis[i] for i in range(cfg.axis_count)]

    @axis.setter
    def axis(self, value):
        if self.built:
            raise AttributeError("axis cannot be changed after build")
        self._axis = value

    @property
    def built(self):
        return bool(lib.bnorm_layer_is_built(self._handle))

    @property
    def fused(self):
        """Keras' layer.fused: the constructor's decision before build, the
        path taken after it."""
        if self.built:
            return bool(lib.bnorm_layer_is_fused(self._handle))
        f = self._fused_arg
        if self._BEHAVIOR == _lib.BEHAVIOR_COMPAT_V1:
            return True if f is None else f
        if f is None and not self._fused_can_be_used():
            return False
        return f

    def _fused_can_be_used(self):
        axes = [self._axis] if isinstance(self._axis, int) else self._axis
        return (not self.renorm and len(axes) == 1 and
                axes[0] in (-4, -3, -1, 1, 3, 4) and
                self.virtual_batch_size is None and self.adjustment is None)

    @property
    def trainable(self):
        return self._trainable

    @trainable.setter
    def trainable(self, value):
        value = bool(value)
        if value == self._trainable:
            return
        _check(lib.bnorm_layer_set_trainable(self._handle, value))
        self._config.trainable = value
        self._trainable = value
        self._variables = None

    @property
    def dtype(self):
        return self._policy.name if self._policy.name != "mixed_float16" \
            else "float32"

    @property
    def compute_dtype(self):
        c = self._policy.compute
        return None if c is None else c.name

    @property
    def variable_dtype(self):
        if self._policy.compute is None:
            return None
        return self._policy.variable.name

    @property
    def dtype_policy(self):
        return self._policy.name

    # -------------------------------------------------------------- build

    def build(self, input_shape):
        """Keras build: `input_shape` may use None for unknown sizes."""
        if self.built:
            return
        shape = tuple(input_shape)
        if hasattr(input_shape, "as_list"):
            shape = tuple(input_shape.as_list())
        vbs = self.virtual_batch_size
        if vbs is not None and vbs <= 0:
            raise ValueError(
                "`virtual_batch_size` must be a positive integer that divides "
                "the true batch size of the input tensor. Received: "
                "virtual_batch_size=%s" % vbs)
        c_shape = tuple(-1 if d is None else int(d) for d in shape)
        _check(lib.bnorm_layer_build(self._handle, _shape_array(c_shape),
                                     len(c_shape)), self._callbacks)
        self._after_build(shape, c_shape)

    def _after_build(self, shape, c_shape):
        self._built_shape = shape
        self._built_shape_c = c_shape
        cfg = lib.bnorm_layer_config(self._handle).contents
        shift = 1 if self.virtual_batch_size else 0
        self._resolved_axes = [cfg.axis[i] - shift
                               for i in range(cfg.axis_count)]
        n = lib.bnorm_layer_variable_count(self._handle)
        self._var_trainable = [bool(self._info(i).trainable) for i in range(n)]
        info = self._info(0)
        self._param_shape = tuple(info.shape[i] for i in range(info.rank))
        self._callbacks.param_shape = self._param_shape
        self._variables = None
        if self._initial_weights is not None:
            weights, self._initial_weights = self._initial_weights, None
            self.set_weights(weights)

    def compute_output_shape(self, input_shape):
        return input_shape

    # -------------------------------------------------------------- call

    def _infer_dtype(self, x):
        """tf.compat.v1 layers take the dtype of their first input."""
        if x.dtype.kind == "f" and x.dtype.itemsize > 8:
            raise TypeError(_UNSUPPORTED_DTYPE % (x.dtype.name,))
        name = {_F16: "float16", _F64: "float64"}.get(x.dtype, "float32")
        policy = _policy_from(name, False)
        if policy.variable != self._callbacks.dtype:
            if self.built:
                raise TypeError(
                    "layer %r was built with float32 variables before its "
                    "first input, which is %s; call it first, or pass "
                    "dtype=%r" % (self.name, x.dtype.name, name))
            self._callbacks.dtype = policy.variable
            self._policy = policy
            self._config = self._make_config(self._trainable)
            self._create()
        self._policy = policy

    def _input(self, inputs):
        x = np.asarray(inputs)
        if self._policy.compute is None:
            self._infer_dtype(x)
        out_dtype = self._policy.compute or _F32
        if out_dtype == _F16:
            x = np.asarray(x, dtype=_F16)
        # always a private copy, in the C layer's dtype
        x = np.array(x, dtype=self._policy.variable, order="C")
        return x, out_dtype, np.asarray(inputs).dtype

    def __call__(self, inputs, training=None, mask=None, defer_updates=False):
        """Runs the layer. training=None means False (Keras' learning phase
        outside fit()). With defer_updates=True the moving-average updates
        are recorded instead of applied; apply them with apply_updates()."""
        if mask is not None:
            raise NotImplementedError("mask is not supported by bnorm")
        if training is None:
            training = self._TRAINING_DEFAULT
        training = bool(training) if training is not None else False
        x, out_dtype, in_dtype = self._input(inputs)
        if not self.built:
            self.build(x.shape)
        y = np.empty_like(x)
        shape = _shape_array(x.shape)
        if self._saved is None:
            saved = c_void_p()
            _check(lib.bnorm_saved_create(byref(saved)))
            self._saved = saved
        pending = None
        if defer_updates:
            if self._updates is None:
                u = c_void_p()
                _check(lib.bnorm_updates_create(byref(u)))
                self._updates = u
            pending = self._updates
        args = _lib.ForwardArgs(x=_ptr(x), y=_ptr(y), shape=shape,
                                rank=x.ndim, training=training,
                                pending=pending, saved=self._saved)
        self._last = None
        _check(lib.bnorm_layer_forward(self._handle, byref(args)),
               self._callbacks)
        self._last = (x, in_dtype)
        return y.astype(out_dtype) if out_dtype != y.dtype else y

    call = __call__

    def backward(self, dy, add_regularization=False):
        """Gradients of the last call: returns (dx, dgamma, dbeta).

        dx has the input's shape (and its float dtype); dgamma / dbeta have
        the parameter shape and are None without scale / center. With
        add_regularization the regularizers' gradients are added to dgamma
        and dbeta (the gradient of sum(y * dy) + sum(layer.losses))."""
        if self._last is None:
            raise RuntimeError(
                "layer %r has no call to differentiate: call the layer first"
                % self.name)
        x, in_dtype = self._last
        dy = np.array(dy, dtype=x.dtype, order="C")
        if dy.shape != x.shape:
            raise ValueError("dy has shape %s but the last call's input had "
                             "shape %s" % (dy.shape, x.shape))
        dx = np.empty_like(x)
        channels = lib.bnorm_layer_channels(self._handle)
        dgamma = np.empty(channels, x.dtype) if self.scale else None
        dbeta = np.empty(channels, x.dtype) if self.center else None
        args = _lib.BackwardArgs(saved=self._saved, x=_ptr(x), dy=_ptr(dy),
                                 shape=_shape_array(x.shape), rank=x.ndim,
                                 dx=_ptr(dx), dgamma=_ptr(dgamma),
                                 dbeta=_ptr(dbeta))
        _check(lib.bnorm_layer_backward(self._handle, byref(args)),
               self._callbacks)
        if add_regularization:
            _check(lib.bnorm_layer_add_regularization_gradients(
                self._handle, _ptr(dgamma), _ptr(dbeta)), self._callbacks)
        if in_dtype.kind == "f" and in_dtype != x.dtype:
            dx = dx.astype(in_dtype)
        shape = self._param_shape
        return (dx, None if dgamma is None else dgamma.reshape(shape),
                None if dbeta is None else dbeta.reshape(shape))

    # -------------------------------------------------------------- updates

    @property
    def pending_updates(self):
        """Number of forward calls whose updates are recorded, not applied."""
        return lib.bnorm_updates_count(self._updates) if self._updates else 0

    def apply_updates(self):
        """Runs the recorded moving-average updates in order (TF1's
        UPDATE_OPS) against the variables' current values."""
        if self._updates:
            _check(lib.bnorm_layer_apply_updates(self._handle, self._updates))

    def clear_updates(self):
        if self._updates:
            lib.bnorm_updates_clear(self._updates)

    # -------------------------------------------------------------- weights

    def _info(self, index):
        info = _lib.VariableInfo()
        _check(lib.bnorm_layer_variable_info(self._handle, index, byref(info)))
        return info

    def _get_variable(self, index):
        n = lib.bnorm_layer_channels(self._handle)
        out = np.empty(n, self._policy.variable)
        _check(lib.bnorm_layer_get_variable(self._handle, index, _ptr(out), n))
        return out

    def _set_variable(self, index, value):
        v = np.ascontiguousarray(value, dtype=self._policy.variable).reshape(-1)
        _check(lib.bnorm_layer_set_variable(self._handle, index, _ptr(v),
                                            v.size))

    def _get_flat(self):
        n = lib.bnorm_layer_weights_count(self._handle)
        out = np.empty(n, self._policy.variable)
        _check(lib.bnorm_layer_get_weights(self._handle, _ptr(out), n))
        return out

    @property
    def weights(self):
        """All variables in Keras order (trainable ones first)."""
        if not self.built:
            return []
        if self._variables is None:
            self._variables = [
                Variable(self, i)
                for i in range(lib.bnorm_layer_variable_count(self._handle))]
        return list(self._variables)

    variables = weights

    @property
    def trainable_weights(self):
        if not self._trainable:
            return []
        return [v for v in self.weights if v.trainable]

    trainable_variables = trainable_weights

    @property
    def non_trainable_weights(self):
        if not self._trainable:
            return self.weights
        return [v for v in self.weights if not v.trainable]

    non_trainable_variables = non_trainable_weights

    def get_weights(self):
        return [v.numpy() for v in self.weights]

    def set_weights(self, weights):
        params = self.weights
        weights = list(weights)
        if len(params) != len(weights):
            raise ValueError(
                "You called `set_weights(weights)` on layer \"%s\" with a "
                "weight list of length %d, but the layer was expecting %d "
                "weights. Provided weights: %s..." %
                (self.name, len(weights), len(params), str(weights)[:50]))
        flat = []
        for p, w in zip(params, weights):
            w = np.asarray(w, dtype=p.dtype)
            if w.shape != p.shape:
                raise ValueError(
                    "Layer %s weight shape %s is not compatible with provided "
                    "weight shape %s." % (self.name, p.shape, w.shape))
            flat.append(w.reshape(-1))
        if not flat:
            return
        values = np.ascontiguousarray(np.concatenate(flat))
        _check(lib.bnorm_layer_set_weights(self._handle, _ptr(values),
                                           values.size))

    def count_params(self):
        if not self.built:
            raise ValueError(
                "You tried to call `count_params` on layer %s, but the layer "
                "isn't built." % self.name)
        return int(lib.bnorm_layer_weights_count(self._handle))

    @property
    def losses(self):
        """One regularization loss per regularized variable (gamma first), as
        scalars of the variables' dtype computed from the current values."""
        if not self.built:
            return []
        losses = (c_double * 2)()
        count = c_size_t()
        _check(lib.bnorm_layer_regularization_losses(
            self._handle, losses, 2, byref(count)), self._callbacks)
        dtype = self._policy.variable.type
        return [dtype(losses[i]) for i in range(count.value)]

    def apply_constraints(self):
        """Applies gamma_constraint / beta_constraint, as a Keras optimizer
        does after each step."""
        _check(lib.bnorm_layer_apply_constraints(self._handle),
               self._callbacks)

    # -------------------------------------------------------------- save / load

    def save_variables(self, path):
        """Writes the variables in the 'bnorm variables' format (bnorm.h)."""
        _check(lib.bnorm_layer_save(self._handle, os.fsencode(path)))

    def load_variables(self, path):
        """Reads variables saved by save_variables (names and shapes must
        match; on any error the layer is unchanged)."""
        _check(lib.bnorm_layer_load(self._handle, os.fsencode(path)))

    def variables_to_bytes(self):
        size = c_size_t()
        status = lib.bnorm_layer_save_to_buffer(self._handle, None, 0,
                                                byref(size))
        if status not in (_lib.OK, _lib.ERR_INVALID_ARGUMENT) or \
                size.value == 0:
            _check(status)
        buf = ctypes.create_string_buffer(size.value)
        _check(lib.bnorm_layer_save_to_buffer(self._handle, buf, size.value,
                                              byref(size)))
        return buf.raw[:size.value]

    def load_variables_from_bytes(self, data):
        data = bytes(data)
        _check(lib.bnorm_layer_load_from_buffer(self._handle, data,
                                                len(data)))

    # -------------------------------------------------------------- config

    def _c_config_json(self):
        length = c_size_t()
        status = lib.bnorm_layer_get_config(self._handle, None, 0,
                                            byref(length))
        if status not in (_lib.OK, _lib.ERR_INVALID_ARGUMENT):
            _check(status)
        buf = ctypes.create_string_buffer(length.value + 1)
        _check(lib.bnorm_layer_get_config(self._handle, buf, length.value + 1,
                                          byref(length)))
        return json.loads(buf.value.decode("utf-8"))

    def get_config(self):
        """Keras get_config(): the C library's JSON, with what only Python
        knows (dtype policy, Python objects) filled in."""
        config = self._c_config_json()
        config["name"] = self.name
        config["trainable"] = self._trainable
        config["dtype"] = self._policy.config()
        if self._batch_input_shape is not None:
            items = list(config.items())
            config = dict(items[:3] + [("batch_input_shape",
                                        self._batch_input_shape)] + items[3:])
        if not self.built and isinstance(self._axis, tuple):
            config["axis"] = self._axis
        for attr in ("beta_initializer", "gamma_initializer",
                     "moving_mean_initializer", "moving_variance_initializer",
                     "beta_regularizer", "gamma_regularizer",
                     "beta_constraint", "gamma_constraint"):
            obj = getattr(self, attr)
            if obj is None or isinstance(obj, objects._KerasObject):
                if obj is not None and attr in config and \
                        obj.c_struct() is not None:
                    continue  # the C library serialized it
                config[attr] = objects.serialize(obj)
            else:
                config[attr] = objects.serialize(obj)
        if self.renorm:
            config["renorm_clipping"] = dict(self.renorm_clipping)
        if self.adjustment is not None:
            warnings.warn(
                "The `adjustment` function of this `BatchNormalization` layer "
                "cannot be serialized and has been omitted from the layer "
                "config. It will not be included when re-creating the layer "
                "from the saved config.")
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        if custom_objects:
            config["_custom_objects"] = custom_objects
        return cls(**config)

    def __repr__(self):
        return "<bnorm.%s name=%r built=%s>" % (type(self).__name__, self.name,
                                               self.built)
