"""API behaviour of the bnorm Python package (no TensorFlow needed)."""
import json
import os
import warnings

import numpy as np
import pytest

import bnorm
from bnorm.compat import v1

BN = bnorm.BatchNormalization


def data(shape, seed=0, loc=0.5, scale=2.0):
    return np.random.default_rng(seed).normal(loc, scale, shape).astype(
        np.float32)


# ------------------------------------------------------------- construction

def test_defaults_and_names():
    bnorm.clear_session()
    a, b = BN(), BN()
    assert (a.name, b.name) == ("batch_normalization", "batch_normalization_1")
    assert BN(name="mine").name == "mine"
    assert a.momentum == 0.99 and a.epsilon == 1e-3 and a.axis == -1
    assert a.center and a.scale and a.trainable and not a.built
    assert a.fused is None                    # Keras: decided at build
    assert BN(renorm=True).fused is False     # can't be fused
    assert v1.BatchNormalization().fused is True


def test_signature_mirrors_tf_keras():
    import inspect
    params = list(inspect.signature(BN).parameters)
    assert params[:14] == [
        "axis", "momentum", "epsilon", "center", "scale", "beta_initializer",
        "gamma_initializer", "moving_mean_initializer",
        "moving_variance_initializer", "beta_regularizer",
        "gamma_regularizer", "beta_constraint", "gamma_constraint",
        "synchronized"]
    for kw in ("renorm", "renorm_clipping", "renorm_momentum", "fused",
               "trainable", "virtual_batch_size", "adjustment", "name"):
        assert kw in params
    p1 = list(inspect.signature(v1.BatchNormalization).parameters)
    assert p1[13:21] == ["renorm", "renorm_clipping", "renorm_momentum",
                         "fused", "trainable", "virtual_batch_size",
                         "adjustment", "name"]


@pytest.mark.parametrize("axis", [1.5, "1", None, [1, "2"], True])
def test_axis_type_error(axis):
    with pytest.raises(TypeError, match="axis"):
        BN(axis=axis)


def test_constructor_errors():
    with pytest.raises(TypeError, match="not understood"):
        BN(foo=1)
    with pytest.raises(NotImplementedError, match="synchronized"):
        BN(synchronized=True)
    with pytest.raises(ValueError, match="synchronized"):
        BN(synchronized=True, fused=True)
    with pytest.raises(ValueError, match="renorm_clipping"):
        BN(renorm=True, renorm_clipping={"rmax": 2, "bad": 1})
    BN(renorm=False, renorm_clipping={"bad": 1})   # ignored like Keras
    with pytest.raises(ValueError, match="renorm"):
        BN(fused=True, renorm=True)
    with pytest.raises(ValueError, match="epsilon"):
        BN(epsilon=-1.0)
    with pytest.raises(ValueError, match="Unknown initializer"):
        BN(gamma_initializer="nope")
    with pytest.raises(ValueError, match="Unknown regularizer"):
        BN(gamma_regularizer={"class_name": "Nope", "config": {}})
    with pytest.raises(NotImplementedError):
        BN(activity_regularizer="l2")
    with pytest.raises(TypeError, match="float32 or float64"):
        BN(dtype="int32")
    v1.BatchNormalization(fused=True, renorm=True)  # TF1: silent fallback


def test_c_errors_carry_message_and_status():
    bn = BN(axis=3)
    with pytest.raises(ValueError) as e:
        bn.build((None, 4))
    assert isinstance(e.value, bnorm.BnormError)
    assert e.value.status == "BNORM_ERR_INVALID_CONFIG"
    assert "axis" in str(e.value)
    assert not bn.built
    bn = BN()
    bn(data((4, 3)))
    with pytest.raises(bnorm.ShapeError, match="size 5"):
        bn(data((4, 5)))
    with pytest.raises(ValueError, match="rank"):
        bn(data((4, 3, 1)))


def test_virtual_batch_size_checks():
    with pytest.raises(ValueError, match="positive"):
        BN(virtual_batch_size=0).build((None, 3))
    bn = BN(virtual_batch_size=3)
    with pytest.raises(ValueError, match="divide"):
        bn(data((4, 2)), training=True)
    bn(data((5, 2)), training=False)           # TF2: any batch at inference
    with pytest.raises(ValueError, match="divide"):
        v1.BatchNormalization(virtual_batch_size=3)(data((4, 2)))


# ------------------------------------------------------------- build, weights

def test_build_and_weights():
    bn = BN(axis=1, name="bn")
    bn.build((None, 3, 4))
    assert bn.built and bn.axis == [1] and bn.fused is False
    names = [w.name for w in bn.weights]
    assert names == ["bn/gamma:0", "bn/beta:0", "bn/moving_mean:0",
                     "bn/moving_variance:0"]
    assert [w.name for w in bn.trainable_weights] == names[:2]
    assert [w.name for w in bn.non_trainable_weights] == names[2:]
    assert all(w.shape == (3,) for w in bn.weights)
    assert bn.count_params() == 12
    bn.build((None, 3, 4))  # a second build is a no-op, as in Keras
    w = [np.arange(3, dtype=np.float32) + i for i in range(4)]
    bn.set_weights(w)
    for a, b in zip(bn.get_weights(), w):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="length 3"):
        bn.set_weights(w[:3])
    with pytest.raises(ValueError, match="not compatible"):
        bn.set_weights(w[:3] + [np.zeros(4)])
    bn.weights[0].assign([5, 6, 7])
    np.testing.assert_array_equal(np.asarray(bn.weights[0]), [5, 6, 7])
    bn.weights[0].assign_sub([1, 1, 1])
    np.testing.assert_array_equal(bn.weights[0].numpy(), [4, 5, 6])
    with pytest.raises(ValueError):
        bn.weights[0].assign([1, 2])


def test_param_shapes():
    bn = BN(axis=[1, 3])
    bn.build((None, 2, 5, 3))
    assert bn.weights[0].shape == (1, 2, 1, 3)
    bn = BN(virtual_batch_size=2)
    bn.build((None, 4))
    assert bn.weights[0].shape == (1, 1, 4) and bn.axis == [2]
    bn = BN(renorm=True)
    bn.build((None, 4))
    assert [w.short_name for w in bn.weights] == [
        "gamma", "beta", "moving_mean", "moving_variance", "moving_stddev",
        "renorm_mean", "renorm_stddev"]
    bn = BN(center=False, scale=False)
    bn.build((None, 4))
    assert [w.short_name for w in bn.weights] == ["moving_mean",
                                                  "moving_variance"]
    assert bn.trainable_weights == []


def test_unbuilt_layer():
    bn = BN()
    assert bn.weights == [] and bn.get_weights() == [] and bn.losses == []
    with pytest.raises(RuntimeError, match="no call"):
        bn.backward(np.zeros((2, 2)))
    with pytest.raises(ValueError):
        bn.count_params()


def test_initializers_all_forms():
    bn = BN(gamma_initializer={"class_name": "Constant",
                               "config": {"value": 2.5}},
            beta_initializer=bnorm.objects.Constant(value=-1),
            moving_mean_initializer=lambda shape, dtype=None:
            np.arange(shape[0]),
            moving_variance_initializer="random_uniform")
    bn.build((None, 3))
    g, b, m, v = bn.get_weights()
    np.testing.assert_array_equal(g, [2.5] * 3)
    np.testing.assert_array_equal(b, [-1] * 3)
    np.testing.assert_array_equal(m, [0, 1, 2])
    assert np.all(np.abs(v) <= 0.05)
    bn = BN(gamma_initializer="he_normal", beta_initializer=None)
    bn.build((None, 16))
    assert np.std(bn.get_weights()[0]) > 0.1
    seeded = [BN(gamma_initializer=bnorm.objects.RandomNormal(seed=3))
              for _ in range(2)]
    for s in seeded:
        s.build((None, 5))
    np.testing.assert_array_equal(seeded[0].get_weights()[0],
                                  seeded[1].get_weights()[0])


def test_callback_exception_propagates():
    class Boom(Exception):
        pass

    calls = []

    def bad_init(shape, dtype=None):
        calls.append(shape)
        if len(calls) == 1:
            raise Boom("no")
        return np.ones(shape)
    bn = BN(gamma_initializer=bad_init)
    with pytest.raises(Boom):
        bn.build((None, 3))
    assert not bn.built
    bn.build((None, 3))  # the layer is still usable


# ------------------------------------------------------------- call

def test_training_default_and_inference():
    bn = BN(momentum=0.5)
    x = data((16, 3))
    y = bn(x)                          # training=None -> inference
    np.testing.assert_allclose(y, x / np.sqrt(1 + 1e-3), rtol=1e-6)
    np.testing.assert_array_equal(bn.get_weights()[2], np.zeros(3))
    y = bn(x, training=True)
    np.testing.assert_allclose(y.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(bn.get_weights()[2], 0.5 * x.mean(0),
                               rtol=1e-5)
    l1 = v1.BatchNormalization()
    l1(x)                              # TF1 layer: training=False default
    np.testing.assert_array_equal(l1.get_weights()[2], np.zeros(3))
    assert l1.apply(x).shape == x.shape


def test_deferred_updates_equal_immediate():
    x1, x2 = data((8, 4), 1), data((8, 4), 2)
    a, b = BN(momentum=0.7, renorm=True), BN(momentum=0.7, renorm=True)
    a(x1, training=True)
    a(x2, training=True)
    b(x1, training=True, defer_updates=True)
    assert b.pending_updates == 1
    np.testing.assert_array_equal(b.get_weights()[2], np.zeros(4))
    b.apply_updates()
    assert b.pending_updates == 0
    b(x2, training=True, defer_updates=True)
    b.apply_updates()
    for p, q in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(p, q)
    b(x2, training=True, defer_updates=True)
    b.clear_updates()
    b.apply_updates()
    for p, q in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(p, q)


def test_trainable_false_and_setter():
    x = data((8, 3))
    bn = BN(trainable=False)
    y = bn(x, training=True)           # Keras 2: frozen -> inference mode
    np.testing.assert_allclose(y, x / np.sqrt(1 + 1e-3), rtol=1e-6)
    assert bn.trainable_weights == [] and len(bn.non_trainable_weights) == 4
    bn.trainable = True
    assert len(bn.trainable_weights) == 2
    y = bn(x, training=True)
    np.testing.assert_allclose(y.mean(0), 0, atol=1e-5)
    # Updates recorded before freezing stay valid (like created update ops).
    bn(x, training=True, defer_updates=True)
    before = bn.get_weights()
    bn.trainable = False
    bn.apply_updates()
    assert not np.array_equal(before[2], bn.get_weights()[2])
    w = bn.get_weights()
    for p, q in zip(w, bn.get_weights()):
        np.testing.assert_array_equal(p, q)
    f = v1.BatchNormalization(trainable=False)
    y = f(x, training=True)            # TF1: batch statistics, no updates
    np.testing.assert_allclose(y.mean(0), 0, atol=1e-5)
    np.testing.assert_array_equal(f.get_weights()[2], np.zeros(3))
    assert f.trainable_weights == []
    f.trainable = True                 # gamma/beta stay non-trainable (TF1)
    assert f.trainable_weights == []


def test_fused_attribute():
    bn = BN()
    bn(data((2, 3, 3, 4)))
    assert bn.fused is True
    bn = BN(axis=2)
    bn(data((2, 3, 3, 4)))
    assert bn.fused is False
    with pytest.raises(ValueError, match="axis"):
        BN(axis=-4)(data((2, 3, 3, 4)))
    with pytest.raises(ValueError, match="4D or 5D"):
        BN(fused=True)(data((2, 3)))
    bn = v1.BatchNormalization(axis=2)
    bn(data((2, 3, 3, 4)))
    assert bn.fused is False


def test_adjustment():
    seen = []

    def adjustment(shape):
        seen.append(shape)
        return np.full(shape[-1:], 2.0), np.full((1, shape[-1]), 0.5)
    bn = BN(adjustment=adjustment, center=False, scale=False)
    x = data((6, 3))
    y = bn(x, training=True)
    assert seen == [(6, 3)]
    xh = (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-3)
    np.testing.assert_allclose(y, 2 * xh + 0.5, rtol=1e-5, atol=1e-5)
    bn(x, training=False)
    assert len(seen) == 1              # only in training
    bad = BN(adjustment=lambda s: (np.ones(s), np.zeros(s)))
    with pytest.raises(ValueError, match="per channel"):
        bad(x, training=True)
    ghost = BN(adjustment=adjustment, virtual_batch_size=2)
    with pytest.raises(ValueError, match="virtual_batch_size"):
        ghost.build((None, 3))   # Keras checks this at build


# ------------------------------------------------------------- dtypes

def test_dtypes():
    x = data((6, 3))
    out = BN()(x.astype(np.float16), training=True)
    assert out.dtype == np.float32     # tf_keras float32 policy
    out = BN()(x.astype(np.float64), training=True)
    assert out.dtype == np.float32
    for policy in ("mixed_float16", "float16"):
        bn = BN(dtype=policy)
        out = bn(x, training=True)
        assert out.dtype == np.float16
        assert bn.weights[0].dtype == np.float32
        ref = BN()(x.astype(np.float16).astype(np.float32), training=True)
        np.testing.assert_array_equal(out, ref.astype(np.float16))
    cfg = BN(dtype="mixed_float16").get_config()
    assert cfg["dtype"]["config"]["name"] == "mixed_float16"
    assert BN.from_config(cfg).dtype_policy == "mixed_float16"
    l1 = v1.BatchNormalization()
    assert l1.get_config()["dtype"] is None
    assert l1(x.astype(np.float16)).dtype == np.float16
    assert l1.get_config()["dtype"] == "float16"


def _normalized64(x, eps=1e-3):
    mean = x.mean(axis=0)
    return (x - mean) / np.sqrt(x.var(axis=0) + eps)


def test_float64_layer():
    """dtype='float64': variables, math, outputs and gradients in float64,
    to float64 precision (a float32 layer is ~1e-7 off)."""
    x = data((64, 3)).astype(np.float64) * 1e-3 + 1e3
    bn = BN(dtype="float64", momentum=0.5)
    y = bn(x, training=True)
    assert y.dtype == np.float64 and bn.dtype == "float64"
    assert bn.compute_dtype == "float64" and bn.variable_dtype == "float64"
    assert all(w.dtype == np.float64 for w in bn.get_weights())
    want = _normalized64(x)
    np.testing.assert_allclose(y, want, rtol=0, atol=1e-9)
    assert np.max(np.abs(BN()(x, training=True) - want)) > 1e-6
    moving_mean = bn.weights[2].numpy()
    np.testing.assert_allclose(moving_mean, 0.5 * x.mean(axis=0), rtol=1e-14)
    assert not bn.fused
    dx, dgamma, dbeta = bn.backward(np.ones_like(x))
    assert dx.dtype == dgamma.dtype == dbeta.dtype == np.float64
    np.testing.assert_allclose(dbeta, [64.0] * 3, rtol=1e-15)
    np.testing.assert_allclose(dx, 0.0, atol=1e-9)
    # float32 input: cast to float64 first (autocast), float64 out
    assert bn(x.astype(np.float32)).dtype == np.float64
    w = [np.full(3, 1 / 3), np.full(3, 0.1), np.full(3, 0.2), np.full(3, 0.3)]
    bn.set_weights(w)
    assert bn.get_weights()[0][0] == 1 / 3      # no float32 rounding
    cfg = bn.get_config()
    assert cfg["dtype"] == "float64"
    assert BN.from_config(cfg).dtype == "float64"
    with pytest.raises(ValueError, match="float32. Got dtype: float64"):
        BN(dtype="float64", fused=True)
    # variables files keep float64 values
    other = BN(dtype="float64", momentum=0.5)
    other.build((None, 3))
    other.load_variables_from_bytes(bn.variables_to_bytes())
    assert other.get_weights()[0][0] == 1 / 3


def test_compat_v1_infers_float64():
    x = data((8, 2)).astype(np.float64)
    layer = v1.BatchNormalization(fused=True)
    y = layer(x, training=True)
    assert y.dtype == np.float64 and layer.weights[0].dtype == np.float64
    assert not layer.fused       # TF1 falls back silently for float64
    np.testing.assert_allclose(y, _normalized64(x), rtol=0, atol=1e-12)
    assert layer.get_config()["dtype"] == "float64"
    # built as float32 before its first input: a float64 input cannot change it
    built = v1.BatchNormalization()
    built.build((None, 2))
    with pytest.raises(TypeError, match="float32"):
        built(x)


# ------------------------------------------------------------- gradients

def _loss(bn, x, dy, training):
    w = bn.get_weights()
    y = bn(x, training=training).astype(np.float64)
    bn.set_weights(w)                  # undo the moving-average update
    return float(np.sum(y * dy))


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("kw", [{}, {"axis": 1}, {"virtual_batch_size": 2},
                                {"renorm": True}, {"axis": [1, 2]}])
def test_backward_finite_differences(training, kw):
    rng = np.random.default_rng(5)
    shape = (4, 3, 2)
    x = rng.normal(0, 1, shape).astype(np.float32)
    dy = rng.normal(0, 1, shape).astype(np.float32)
    bn = BN(momentum=0.0, epsilon=0.1, **kw)
    bn.build((None,) + shape[1:])
    w = bn.get_weights()
    w[0] = rng.uniform(0.5, 1.5, w[0].shape).astype(np.float32)
    w[1] = rng.normal(0, 1, w[1].shape).astype(np.float32)
    bn.set_weights(w)
    bn(x, training=training)
    bn.set_weights(w)
    dx, dgamma, dbeta = bn.backward(dy)
    h = 1e-2
    num = np.zeros_like(x, dtype=np.float64)
    for i in np.ndindex(shape):
        xp, xm = x.copy(), x.copy()
        xp[i] += h
        xm[i] -= h
        num[i] = (_loss(bn, xp, dy, training) - _loss(bn, xm, dy,
                                                      training)) / (2 * h)
    if not kw.get("renorm"):  # renorm's r, d are stop-gradient constants
        np.testing.assert_allclose(dx, num, rtol=2e-2, atol=2e-3)
    g = w[0].copy()
    num_g = np.zeros_like(g, dtype=np.float64)
    for i in np.ndindex(g.shape):
        for sgn in (1, -1):
            w2 = [a.copy() for a in w]
            w2[0][i] += sgn * h
            bn.set_weights(w2)
            num_g[i] += sgn * _loss(bn, x, dy, training) / (2 * h)
    np.testing.assert_allclose(dgamma, num_g, rtol=2e-2, atol=2e-3)
    assert dx.shape == x.shape and dgamma.shape == w[0].shape


def test_backward_checks_and_dtypes():
    bn = BN(center=False)
    x = data((4, 3))
    bn(x, training=True)
    dx, dgamma, dbeta = bn.backward(np.ones((4, 3)))
    assert dbeta is None and dgamma.shape == (3,)
    with pytest.raises(ValueError, match="shape"):
        bn.backward(np.ones((4, 2)))
    bn = BN()
    bn(x.astype(np.float16), training=True)
    assert bn.backward(np.ones((4, 3)))[0].dtype == np.float16


# ------------------------------------------------------------- regularizers

def test_losses_and_regularization_gradients():
    bn = BN(gamma_regularizer="l2", beta_regularizer=bnorm.objects.L1(0.5))
    x = data((5, 3))
    bn(x, training=True)
    g, b = bn.get_weights()[:2]
    bn.weights[1].assign([0.5, -1.0, 2.0])
    assert len(bn.losses) == 2
    np.testing.assert_allclose(bn.losses[0], 0.01 * np.sum(g ** 2), rtol=1e-6)
    np.testing.assert_allclose(bn.losses[1], 0.5 * 3.5, rtol=1e-6)
    _, dg0, db0 = bn.backward(np.ones((5, 3)))
    _, dg1, db1 = bn.backward(np.ones((5, 3)), add_regularization=True)
    np.testing.assert_allclose(dg1 - dg0, 0.02 * g, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(db1 - db0, [0.5, -0.5, 0.5], rtol=1e-6)


def test_callable_regularizer_and_constraint():
    class Reg:
        def __call__(self, w):
            return 3.0 * np.sum(w)

        def gradient(self, w):
            return np.full_like(w, 3.0)

    bn = BN(gamma_regularizer=Reg(), beta_regularizer=lambda w: 0.0,
            gamma_constraint=lambda w: np.clip(w, 0, 0.5),
            beta_constraint="non_neg")
    bn(data((4, 2)), training=True)
    np.testing.assert_allclose(bn.losses, [6.0, 0.0])
    _, dg0, _ = bn.backward(np.ones((4, 2)))
    bn.weights[1].assign([0.0, 0.0])
    with pytest.raises(NotImplementedError, match="gradient"):
        bn.backward(np.ones((4, 2)), add_regularization=True)
    bn.weights[1].assign([-1.0, 2.0])
    bn.apply_constraints()
    np.testing.assert_array_equal(bn.get_weights()[0], [0.5, 0.5])
    np.testing.assert_array_equal(bn.get_weights()[1], [0.0, 2.0])


# ------------------------------------------------------------- config

def test_get_config_from_config_round_trip():
    bn = BN(axis=[1, 2], momentum=0.9, epsilon=1e-5, center=False,
            gamma_initializer={"class_name": "RandomNormal",
                               "config": {"mean": 1.0, "stddev": 0.1,
                                          "seed": 7}},
            gamma_regularizer="l1_l2", beta_constraint="max_norm",
            renorm=True, renorm_clipping={"rmax": 3.0},
            renorm_momentum=0.5, virtual_batch_size=4, name="cfg")
    cfg = bn.get_config()
    json.dumps(cfg)
    assert cfg["axis"] == [1, 2] and cfg["renorm_clipping"] == {"rmax": 3.0}
    assert cfg["virtual_batch_size"] == 4 and "fused" not in cfg
    assert cfg["gamma_regularizer"]["class_name"] == "L1L2"
    again = BN.from_config(cfg)
    assert again.get_config() == cfg
    bn.build((None, 3, 4))
    assert bn.get_config()["axis"] == [2, 3]   # resolved and shifted (Keras)
    assert BN(axis=(1, 2)).get_config()["axis"] == (1, 2)


def test_custom_objects_in_from_config():
    def my_init(shape, dtype=None):
        return np.full(shape, 4.0)
    bn = BN(gamma_initializer=my_init)
    cfg = bn.get_config()
    assert cfg["gamma_initializer"]["config"] == "my_init"
    with pytest.raises(ValueError):
        BN.from_config(cfg)
    again = BN.from_config(cfg, custom_objects={"my_init": my_init})
    again.build((None, 2))
    np.testing.assert_array_equal(again.get_weights()[0], [4.0, 4.0])


def test_adjustment_not_serialized():
    bn = BN(adjustment=lambda s: (np.ones(s[-1:]), np.zeros(s[-1:])))
    with pytest.warns(UserWarning, match="adjustment"):
        cfg = bn.get_config()
    assert "adjustment" not in cfg


def test_keras_like_objects_are_mapped():
    class L2:  # what a tf_keras.regularizers.L2 instance looks like
        def __init__(self, l2):
            self.l2 = l2

        def __call__(self, x):
            raise AssertionError("mapped to the C built-in, never called")

        def get_config(self):
            return {"l2": self.l2}
    bn = BN(gamma_regularizer=L2(0.5))
    assert isinstance(bn.gamma_regularizer, bnorm.objects.L2)
    bn.build((None, 2))
    np.testing.assert_allclose(bn.losses, [1.0])


# ------------------------------------------------------------- save / load

def test_save_load_variables(tmp_path):
    bn = BN(renorm=True)
    bn(data((8, 3)), training=True)
    path = str(tmp_path / "bn.vars")
    bn.save_variables(path)
    blob = bn.variables_to_bytes()
    assert blob[:8] == b"BNORMVAR"
    with open(path, "rb") as f:
        assert f.read() == blob
    other = BN(renorm=True)
    other.build((None, 3))
    other.load_variables(path)
    for a, b in zip(bn.get_weights(), other.get_weights()):
        np.testing.assert_array_equal(a, b)
    third = BN(renorm=True)
    third.build((None, 3))
    third.load_variables_from_bytes(blob)
    for a, b in zip(bn.get_weights(), third.get_weights()):
        np.testing.assert_array_equal(a, b)
    wrong = BN()
    wrong.build((None, 4))
    before = wrong.get_weights()
    with pytest.raises(bnorm.BnormError):
        wrong.load_variables(path)
    for a, b in zip(before, wrong.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError):
        third.load_variables_from_bytes(blob[:-1] + bytes([blob[-1] ^ 1]))
    with pytest.raises(OSError):
        third.load_variables(str(tmp_path / "missing"))


# ------------------------------------------------------------- runtime

def test_small_calls():
    x = data((8, 7, 7, 32))
    before = (bnorm.get_num_threads(), bnorm.get_small_calls())
    try:
        bnorm.set_num_threads(2)
        outs = []
        for mode in ("share", "choose"):
            bnorm.set_small_calls(mode)
            assert bnorm.get_small_calls() == mode
            layer = BN()
            # choose: the first calls share, the next ones run alone
            outs.append([layer(x, training=True) for _ in range(10)])
        for a, b in zip(*outs):
            np.testing.assert_array_equal(a, b)  # bit-identical
        with pytest.raises(ValueError, match="alone"):
            bnorm.set_small_calls("alone")
    finally:
        bnorm.set_num_threads(0)
        bnorm.set_small_calls(before[1])
    assert (bnorm.get_num_threads(), bnorm.get_small_calls()) == before


def test_threads_and_isa():
    x = data((64, 16))
    before = (bnorm.get_num_threads(), bnorm.get_isa())
    try:
        outs = []
        for threads in (1, 2):
            bnorm.set_num_threads(threads)
            assert bnorm.get_num_threads() == threads
            outs.append(BN()(x, training=True))
        np.testing.assert_array_equal(outs[0], outs[1])  # bit-identical
        with pytest.raises(bnorm.BnormError):
            bnorm.set_num_threads(-1)
        bnorm.set_max_isa("scalar")
        assert bnorm.get_isa() == "scalar"
        scalar = BN()(x, training=True)
        np.testing.assert_allclose(scalar, outs[0], rtol=0, atol=1e-5)
        with pytest.raises(ValueError, match="sse"):
            bnorm.set_max_isa("sse")
    finally:
        bnorm.set_num_threads(0)
        bnorm.set_max_isa(before[1])
    assert (bnorm.get_num_threads(), bnorm.get_isa()) == before
