#!/usr/bin/env python3
"""make_parity_golden.py - golden data for the Python package's parity tests.

Run from the repository root with TensorFlow 2.21 + tf_keras 2.21:

    .venv-tf/bin/python tools/make_parity_golden.py

Writes tests/golden/parity/keras.json (tf_keras.layers.BatchNormalization,
eager TF2) and tests/golden/parity/compat_v1.json
(tf.compat.v1.layers.BatchNormalization in TF1 graph mode: a child process
calls tf.compat.v1.disable_v2_behavior() before building anything).

Each case is a seeded, multi-step run: constructor kwargs, input dtype, the
initial weights (random, set with set_weights after build), then per step the
input x, the `training` value, the upstream gradient dy and what TensorFlow
produced: y, dx / dgamma / dbeta (GradientTape / tf.gradients of
sum(y * dy)), the same with sum(layer.losses) added when regularized, every
weight after the step's moving-average updates and layer.losses. A final
`constraint` record assigns perturbed gamma/beta and applies the variables'
constraints as a Keras optimizer does. compat_v1 runs the step's output and
gradients first and the step's UPDATE_OPS in a second Session.run (the
bnorm equivalent is defer_updates=True then apply_updates()).

Arrays are stored exactly: {"shape", "dtype", "b64"} with the little-endian
bytes base64-encoded. Cases that TensorFlow rejects are written to "errors"
with the phase (init / build / call) and the exception class.

The python tests (python/tests/test_parity.py) replay every case through
bnorm without TensorFlow. `BNORM_LIVE_TF=1 pytest -k live` runs the same
generator in-process and compares directly.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OUT_DIR = os.path.join(ROOT, "tests", "golden", "parity")

import numpy as np  # noqa: E402

# ---------------------------------------------------------------- encoding


def enc(a):
    a = np.ascontiguousarray(a)
    return {"shape": list(a.shape), "dtype": a.dtype.name,
            "b64": base64.b64encode(a.astype(a.dtype.newbyteorder("<"))
                                    .tobytes()).decode("ascii")}


def dec(d):
    if d is None:
        return None
    a = np.frombuffer(base64.b64decode(d["b64"]),
                      dtype=np.dtype(d["dtype"]).newbyteorder("<"))
    return a.astype(np.dtype(d["dtype"])).reshape(d["shape"])


# ---------------------------------------------------------------- cases

REGS = [None, "l2", {"class_name": "L1", "config": {"l1": 0.05}},
        {"class_name": "L1L2", "config": {"l1": 0.01, "l2": 0.02}}]
CONSTRAINTS = [None, "non_neg", {"class_name": "MaxNorm",
                                 "config": {"max_value": 1.5, "axis": 0}},
               "unit_norm", {"class_name": "MinMaxNorm",
                             "config": {"min_value": 0.5, "max_value": 1.0,
                                        "rate": 0.8, "axis": 0}}]
SHAPES = {2: [(6, 5), (8, 3)], 3: [(4, 3, 5), (6, 2, 4)],
          4: [(4, 3, 2, 5), (6, 2, 3, 3)], 5: [(4, 2, 2, 3, 3),
                                               (4, 3, 2, 2, 2)]}


def random_case(rng, i, layer):
    rank = int(rng.integers(2, 6))
    shape = list(SHAPES[rank][int(rng.integers(0, 2))])
    choice = int(rng.integers(0, 5))
    if choice == 0:
        axis = -1
    elif choice == 1:
        axis = int(rng.integers(1, rank))
    elif choice == 2:
        axis = -int(rng.integers(1, rank))
    elif choice == 3 and rank >= 3:
        axis = sorted(int(a) for a in rng.choice(np.arange(1, rank), 2,
                                                 replace=False))
    else:
        axis = [-1]
    kw = {"axis": axis,
          "momentum": float(rng.choice([0.99, 0.9, 0.5, 0.0])),
          "epsilon": float(rng.choice([1e-3, 1e-5, 1e-6, 0.1])),
          "center": bool(rng.random() > 0.2),
          "scale": bool(rng.random() > 0.2)}
    if rng.random() < 0.35:
        kw["renorm"] = True
        keys = [k for k in ("rmax", "rmin", "dmax") if rng.random() < 0.5]
        vals = {"rmax": 1.3, "rmin": 0.8, "dmax": 0.4}
        kw["renorm_clipping"] = {k: vals[k] for k in keys}
        kw["renorm_momentum"] = float(rng.choice([0.99, 0.9, 0.6]))
    adjustment = False
    if rng.random() < 0.2 and shape[0] % 2 == 0:
        kw["virtual_batch_size"] = 2 if shape[0] % 4 else int(
            rng.choice([2, 4]))
    elif rng.random() < 0.2:
        adjustment = True
    kw["fused"] = [None, False, True][int(rng.integers(0, 3))] \
        if rng.random() < 0.5 else None
    if rng.random() < 0.15:
        kw["trainable"] = False
    r = int(rng.integers(0, len(REGS)))
    if r:
        kw["gamma_regularizer"] = REGS[r]
    r = int(rng.integers(0, len(REGS)))
    if r:
        kw["beta_regularizer"] = REGS[r]
    c = int(rng.integers(0, len(CONSTRAINTS)))
    if c:
        kw["gamma_constraint"] = CONSTRAINTS[c]
    c = int(rng.integers(0, len(CONSTRAINTS)))
    if c:
        kw["beta_constraint"] = CONSTRAINTS[c]
    pattern = [[True, True, False], [True, None, True], [False, True, True],
               [True, False, True]][int(rng.integers(0, 4))]
    return {"id": "%s_random_%02d" % (layer, i), "layer": layer,
            "kwargs": kw, "adjustment": adjustment, "shape": shape,
            "training": pattern}


def targeted_cases(layer):
    C = []

    def add(name, kw, shape, training=(True, True, False), **extra):
        c = {"id": "%s_%s" % (layer, name), "layer": layer, "kwargs": kw,
             "adjustment": False, "shape": list(shape),
             "training": list(training)}
        c.update(extra)
        C.append(c)

    add("rank2_default", {}, (6, 5))
    add("rank2_momentum0_eps_small", {"momentum": 0.0, "epsilon": 1e-6},
        (8, 3))
    add("nhwc_fused_auto", {"axis": -1}, (4, 3, 2, 5))
    add("nchw_fused_true", {"axis": 1, "fused": True}, (4, 3, 2, 5))
    add("nhwc_fused_false", {"axis": 3, "fused": False}, (4, 3, 2, 5))
    add("ndhwc_fused_eps_tiny", {"epsilon": 1e-6, "fused": True},
        (4, 2, 2, 3, 3))
    add("ncdhw_fused_eps_1e5", {"axis": 1, "epsilon": 1e-5},
        (4, 3, 2, 2, 2))
    add("nhwc_fused_eps_zero", {"epsilon": 0.0}, (4, 2, 3, 4))
    add("rank5_axis2", {"axis": 2}, (4, 2, 3, 2, 2))
    add("rank3_multi_axis", {"axis": [1, 2]}, (4, 3, 5))
    add("rank4_multi_axis_neg", {"axis": [-3, -1]}, (4, 3, 2, 5))
    add("rank4_axis0", {"axis": 0}, (4, 3, 2, 5), training=(True, False))
    add("center_scale_off", {"center": False, "scale": False}, (6, 5))
    add("scale_off_renorm", {"scale": False, "renorm": True,
                             "renorm_clipping": {"rmax": 1.2}}, (6, 5))
    for key, val in (("rmax", 1.1), ("rmin", 0.9), ("dmax", 0.2)):
        add("renorm_clip_" + key,
            {"renorm": True, "renorm_clipping": {key: val},
             "renorm_momentum": 0.9, "momentum": 0.8}, (8, 3),
            training=(True, True, True, False))
    add("renorm_clip_all_rank4", {
        "renorm": True, "renorm_clipping": {"rmax": 1.2, "rmin": 0.85,
                                            "dmax": 0.3}}, (4, 3, 2, 5))
    add("renorm_no_clip", {"renorm": True, "epsilon": 1e-5}, (6, 5))
    add("vbs_rank2", {"virtual_batch_size": 2}, (8, 3),
        training=(True, True, False))
    add("vbs_rank4_renorm", {"virtual_batch_size": 3, "renorm": True,
                             "renorm_clipping": {"dmax": 0.5}},
        (6, 2, 3, 4))
    add("vbs_multi_axis", {"virtual_batch_size": 2, "axis": [1, 3]},
        (4, 3, 2, 2))
    if layer == "keras":
        # tf_keras (TF2) accepts any batch at inference with a virtual batch.
        add("vbs_inference_any_batch", {"virtual_batch_size": 4}, (8, 3),
            training=(True, False), inference_batch=6)
    add("adjustment_last_axis", {"momentum": 0.9}, (6, 5),
        adjustment=True)
    add("adjustment_axis1_rank4", {"axis": 1}, (4, 3, 2, 2),
        adjustment=True)
    add("adjustment_renorm", {"renorm": True, "renorm_clipping":
                              {"rmax": 1.5, "rmin": 0.7}}, (6, 5),
        adjustment=True)
    add("frozen", {"trainable": False}, (6, 5))
    add("frozen_fused", {"trainable": False, "axis": 3}, (4, 3, 2, 5))
    add("frozen_renorm", {"trainable": False, "renorm": True}, (6, 5),
        training=(True, True))
    add("regularized_constrained", {
        "gamma_regularizer": "l2", "beta_regularizer": "l1",
        "gamma_constraint": "non_neg",
        "beta_constraint": {"class_name": "MaxNorm",
                            "config": {"max_value": 0.5, "axis": 0}}},
        (6, 5))
    add("fp16_input", {}, (6, 5), dtype="float16")
    add("fp16_input_fused", {"axis": 3}, (4, 3, 2, 5), dtype="float16")
    if layer == "keras":
        add("mixed_float16", {"dtype": "mixed_float16"}, (6, 5),
            dtype="float16")
        add("mixed_float16_fused", {"dtype": "mixed_float16", "axis": 1},
            (4, 3, 2, 2), dtype="float16")
        add("float32_policy_fp64_input", {}, (6, 5), dtype="float64")
    # float64 layers (Keras: dtype="float64"; TF1: a float64 first input).
    # Renorm is left out: TensorFlow 2.21 fails on it in float64 (it takes
    # the maximum of a float64 stddev and a float32 epsilon).
    f64 = {"dtype": "float64"} if layer == "keras" else {}
    add("float64_rank2", dict(f64, momentum=0.9, epsilon=1e-7), (6, 5),
        dtype="float64", training=(True, True, False, None))
    add("float64_nchw", dict(f64, axis=1), (4, 3, 2, 2), dtype="float64")
    add("float64_nhwc_fused_none", dict(f64), (4, 2, 2, 3), dtype="float64")
    add("float64_fused_true", dict(f64, axis=3, fused=True), (4, 2, 2, 3),
        dtype="float64")
    add("float64_multi_axis", dict(f64, axis=[1, 2]), (4, 3, 5),
        dtype="float64")
    add("float64_vbs", dict(f64, virtual_batch_size=2), (8, 3),
        dtype="float64")
    add("float64_frozen", dict(f64, trainable=False), (6, 5),
        dtype="float64")
    add("float64_regularized_constrained", dict(
        f64, gamma_regularizer="l2", beta_regularizer="l1",
        gamma_constraint="unit_norm",
        beta_constraint={"class_name": "MinMaxNorm",
                         "config": {"min_value": 0.1, "max_value": 0.4,
                                    "rate": 0.5, "axis": 0}}),
        (6, 5), dtype="float64")
    add("float64_large_mean", dict(f64, momentum=0.5), (16, 3),
        dtype="float64", x_offset=1e4)
    add("training_none", {}, (6, 5), training=(None, True, None))
    return C


ERROR_CASES = [
    ("axis_tuple_ok", {"axis": (1, 2)}, [4, 3, 5], "none"),
    ("axis_float", {"axis": 1.5}, [4, 3], "init"),
    ("axis_out_of_range", {"axis": 3}, [4, 3], "build"),
    ("axis_duplicate", {"axis": [1, -1]}, [4, 3], "build"),
    ("renorm_bad_key", {"renorm": True, "renorm_clipping": {"foo": 1}},
     [4, 3], "init"),
    ("fused_renorm", {"fused": True, "renorm": True}, [4, 2, 2, 3], "init"),
    ("fused_multi_axis", {"fused": True, "axis": [1, 2]}, [4, 2, 2, 3],
     "init"),
    ("fused_rank3", {"fused": True}, [4, 2, 3], "build"),
    ("fused_axis_minus4", {"axis": -4}, [4, 2, 2, 3], "build"),
    ("fused_vbs", {"fused": True, "virtual_batch_size": 2}, [4, 2, 2, 3],
     "init"),
    ("vbs_zero", {"virtual_batch_size": 0}, [4, 3], "build"),
    ("vbs_axis0", {"virtual_batch_size": 2, "axis": 0}, [4, 3], "build"),
    ("vbs_not_dividing", {"virtual_batch_size": 3}, [4, 3], "call"),
]

# ---------------------------------------------------------------- data


def case_rng(case_id):
    return np.random.default_rng(zlib.crc32(case_id.encode()))


def input_data(rng, shape, dtype):
    x = rng.normal(0.7, 2.0, size=shape) + rng.normal(0, 1.5, size=shape[-1])
    return x.astype(dtype)


def initial_weights(rng, shapes_names):
    out = []
    for name, shape in shapes_names:
        if name == "gamma":
            v = rng.uniform(0.5, 1.5, shape)
        elif name == "beta":
            v = rng.normal(0, 0.5, shape)
        elif name in ("moving_mean", "renorm_mean"):
            v = rng.normal(0, 1.0, shape)
        elif name == "moving_variance":
            v = rng.uniform(0.5, 2.0, shape)
        else:  # moving_stddev, renorm_stddev
            v = rng.uniform(0.7, 1.5, shape)
        out.append(v.astype(np.float32))
    return out


def short(name):
    return name.split("/")[-1].split(":")[0]


def broadcast_shape(layer_axis, rank, shape):
    """Keras' broadcast shape of the parameters (for the adjustment)."""
    axes = [a % rank for a in layer_axis]
    if len(axes) == 1 and axes[0] == rank - 1:
        return (shape[-1],)
    return tuple(shape[i] if i in axes else 1 for i in range(rank))


def adjustment_values(rng, bshape):
    s = rng.uniform(0.9, 1.1, bshape).astype(np.float32)
    b = rng.uniform(-0.1, 0.1, bshape).astype(np.float32)
    return s, b


def kwargs_for_tf(tf, kw):
    kw = dict(kw)
    if isinstance(kw.get("axis"), tuple):
        kw["axis"] = tuple(kw["axis"])
    return kw


def step_plan(case, rng):
    """x, dy, adjustment per step (shared by the TF runners and the tests)."""
    dtype = case.get("dtype", "float32")
    steps = []
    for k, tr in enumerate(case["training"]):
        shape = list(case["shape"])
        if tr is False and case.get("inference_batch"):
            shape[0] = case["inference_batch"]
        x = input_data(rng, shape, dtype)
        if case.get("x_offset"):
            x = (x + case["x_offset"]).astype(dtype)
        dy = rng.normal(0, 1.0, size=shape).astype(np.float32)
        if dtype == "float16":
            dy = dy.astype(np.float16).astype(np.float32)
        steps.append({"x": x, "dy": dy, "training": tr})
    return steps


# ---------------------------------------------------------------- runners


def run_keras_case(tf, tf_keras, case):
    rng = case_rng(case["id"])
    kw = kwargs_for_tf(tf, case["kwargs"])
    steps = step_plan(case, rng)
    adj = {"values": None, "shapes": []}
    rank = len(case["shape"])
    axis = kw.get("axis", -1)
    axis_list = [axis] if isinstance(axis, int) else list(axis)
    bshape = broadcast_shape(axis_list, rank, case["shape"])
    if case["adjustment"]:
        def adjustment(shape):
            adj["shapes"].append([int(v) for v in shape.numpy()])
            s, b = adj["values"]
            return tf.constant(s), tf.constant(b)
        kw["adjustment"] = adjustment
    layer = tf_keras.layers.BatchNormalization(**kw)
    build_shape = [None] + case["shape"][1:]
    if (isinstance(axis, int) and axis % rank == 0) or 0 in [
            a % rank for a in axis_list]:
        build_shape = case["shape"]
    layer.build(build_shape)
    names = [(short(w.name), tuple(w.shape)) for w in layer.weights]
    init = initial_weights(rng, names)
    layer.set_weights(init)
    out = {"initial_weights": [enc(w) for w in init],
           "weight_names": [n for n, _ in names],
           "fused": bool(layer.fused), "steps": []}
    for st in steps:
        if case["adjustment"]:
            adj["values"] = adjustment_values(rng, bshape)
        x = tf.constant(st["x"])
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(x)
            y = layer(x, training=st["training"])
            loss = tf.reduce_sum(tf.cast(y, tf.float32) * st["dy"])
            losses = layer.losses
            loss_reg = loss + tf.cast(tf.add_n(losses), loss.dtype) \
                if losses else None
        params = [v for v in (getattr(layer, "gamma", None),
                              getattr(layer, "beta", None)) if v is not None]
        g = tape.gradient(loss, [x] + params)
        rec = {"x": enc(st["x"]), "dy": enc(st["dy"]),
               "training": st["training"], "y": enc(y.numpy()),
               "dx": enc(g[0].numpy())}
        gi = 1
        for nm in ("gamma", "beta"):
            if getattr(layer, nm, None) is not None:
                rec["d" + nm] = enc(g[gi].numpy())
                gi += 1
        if loss_reg is not None:
            gr = tape.gradient(loss_reg, params)
            gi = 0
            for nm in ("gamma", "beta"):
                if getattr(layer, nm, None) is not None:
                    rec["d%s_reg" % nm] = enc(gr[gi].numpy())
                    gi += 1
        del tape
        if case["adjustment"]:
            s, b = adj["values"]
            rec["adj_scale"], rec["adj_bias"] = enc(s), enc(b)
        rec["weights"] = [enc(w) for w in layer.get_weights()]
        rec["losses"] = [float(v) for v in layer.losses]
        out["steps"].append(rec)
    out["adjustment_shapes"] = adj["shapes"]
    out["constraint"] = constraint_record(layer, rng)
    out["config"] = plain(layer.get_config())
    return out


def constraint_record(layer, rng):
    rec = {}
    for nm in ("gamma", "beta"):
        v = getattr(layer, nm, None)
        if v is None:
            continue
        pre = (v.numpy() + rng.normal(0, 0.8, v.shape)).astype(np.float32)
        v.assign(pre)
        rec[nm + "_before"] = enc(pre)
    for nm in ("gamma", "beta"):
        v = getattr(layer, nm, None)
        if v is not None and getattr(v, "constraint", None) is not None:
            v.assign(v.constraint(v))
    for nm in ("gamma", "beta"):
        v = getattr(layer, nm, None)
        if v is not None:
            rec[nm + "_after"] = enc(v.numpy() if hasattr(v, "numpy")
                                     else None)
    return rec


def plain(o):
    if isinstance(o, dict):
        return {k: plain(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [plain(v) for v in o]
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, (np.integer,)):
        return int(o)
    return o


def run_v1_case(tf, case):
    """tf.compat.v1.layers in TF1 graph mode (v2 behaviour disabled)."""
    rng = case_rng(case["id"])
    kw = dict(case["kwargs"])
    steps = step_plan(case, rng)
    rank = len(case["shape"])
    axis = kw.get("axis", -1)
    axis_list = [axis] if isinstance(axis, int) else list(axis)
    bshape = broadcast_shape(axis_list, rank, case["shape"])
    dtype = {"float16": tf.float16, "float64": tf.float64}.get(
        case.get("dtype"), tf.float32)
    g = tf.Graph()
    with g.as_default():
        ph_s = ph_b = None
        if case["adjustment"]:
            ph_s = tf.compat.v1.placeholder(tf.float32, bshape)
            ph_b = tf.compat.v1.placeholder(tf.float32, bshape)
            kw["adjustment"] = lambda shape: (ph_s, ph_b)
        layer = tf.compat.v1.layers.BatchNormalization(**kw)
        pshape = [None] + case["shape"][1:]
        if 0 in [a % rank for a in axis_list]:
            pshape = case["shape"]
        xp = tf.compat.v1.placeholder(dtype, pshape)
        dyp = tf.compat.v1.placeholder(tf.float32, pshape)
        calls = {}
        for tr in sorted(set(map(str, case["training"]))):
            tr_val = {"True": True, "False": False, "None": None}[tr]
            n0 = len(tf.compat.v1.get_collection(
                tf.compat.v1.GraphKeys.UPDATE_OPS))
            y = layer(xp, training=False if tr_val is None else tr_val) \
                if tr_val is not None else layer(xp)
            ups = tf.compat.v1.get_collection(
                tf.compat.v1.GraphKeys.UPDATE_OPS)[n0:]
            loss = tf.reduce_sum(tf.cast(y, tf.float32) * dyp)
            params = [v for v in (getattr(layer, "gamma", None),
                                  getattr(layer, "beta", None))
                      if v is not None]
            grads = tf.gradients(loss, [xp] + params)
            losses = layer.losses
            greg = tf.gradients(
                loss + tf.cast(tf.add_n(losses), loss.dtype), params) \
                if losses else None
            calls[tr] = (y, grads, greg, ups)
        names = [(short(w.name), tuple(w.shape.as_list()))
                 for w in layer.weights]
        init = initial_weights(rng, names)
        assign_phs = [tf.compat.v1.placeholder(w.dtype.base_dtype, s)
                      for w, (_, s) in zip(layer.weights, names)]
        assigns = [tf.compat.v1.assign(w, p)
                   for w, p in zip(layer.weights, assign_phs)]
        with tf.compat.v1.Session(graph=g) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            sess.run(assigns, dict(zip(assign_phs, init)))
            out = {"initial_weights": [enc(w) for w in init],
                   "weight_names": [n for n, _ in names],
                   "fused": bool(layer.fused), "steps": []}
            for st in steps:
                y, grads, greg, ups = calls[str(st["training"])]
                feed = {xp: st["x"], dyp: st["dy"]}
                rec = {"x": enc(st["x"]), "dy": enc(st["dy"]),
                       "training": st["training"]}
                if case["adjustment"]:
                    s, b = adjustment_values(rng, bshape)
                    feed[ph_s], feed[ph_b] = s, b
                    rec["adj_scale"], rec["adj_bias"] = enc(s), enc(b)
                yv, gv = sess.run([y, grads], feed)
                rec["y"], rec["dx"] = enc(yv), enc(gv[0])
                gi = 1
                for nm in ("gamma", "beta"):
                    if getattr(layer, nm, None) is not None:
                        rec["d" + nm] = enc(gv[gi])
                        gi += 1
                if greg is not None:
                    gr = sess.run(greg, feed)
                    gi = 0
                    for nm in ("gamma", "beta"):
                        if getattr(layer, nm, None) is not None:
                            rec["d%s_reg" % nm] = enc(gr[gi])
                            gi += 1
                if ups:
                    sess.run(ups, feed)
                rec["weights"] = [enc(w) for w in sess.run(layer.weights)]
                rec["losses"] = [float(v) for v in sess.run(layer.losses)]
                out["steps"].append(rec)
            crec = {}
            for nm in ("gamma", "beta"):
                v = getattr(layer, nm, None)
                if v is None:
                    continue
                cur = sess.run(v)
                pre = (cur + rng.normal(0, 0.8, cur.shape)).astype(np.float32)
                v.load(pre, sess)
                crec[nm + "_before"] = enc(pre)
            for nm in ("gamma", "beta"):
                v = getattr(layer, nm, None)
                if v is not None and v.constraint is not None:
                    sess.run(tf.compat.v1.assign(v, v.constraint(v)))
            for nm in ("gamma", "beta"):
                v = getattr(layer, nm, None)
                if v is not None:
                    crec[nm + "_after"] = enc(sess.run(v))
            out["constraint"] = crec
        out["config"] = plain(layer.get_config())
    out["adjustment_shapes"] = []
    return out


def run_error_case(tf, make_layer, name, kw, shape, expected, graph):
    """Runs an error probe; returns the phase and exception class."""
    phase = "init"
    try:
        ctx = tf.Graph().as_default() if graph else _null()
        with ctx:
            layer = make_layer(**kw)
            phase = "build"
            layer.build([None] + shape[1:] if 0 not in _axes(kw, shape)
                        else shape)
            phase = "call"
            x = np.ones(shape, np.float32)
            if graph:
                y = layer(tf.constant(x), training=True)
                with tf.compat.v1.Session() as sess:
                    sess.run(tf.compat.v1.global_variables_initializer())
                    sess.run(y)
            else:
                layer(x, training=True)
            phase = "none"
            exc = None
    except Exception as e:  # noqa: BLE001 -- recorded
        exc = e
    base = None
    if exc is not None:
        for b in (TypeError, ValueError):
            if isinstance(exc, b):
                base = b.__name__
        if base is None and type(exc).__name__ == "InvalidArgumentError":
            base = "ValueError"  # bnorm reports run-time shape errors so
        base = base or type(exc).__name__
    return {"id": name, "kwargs": kw, "shape": shape, "phase": phase,
            "exception": base, "tf_exception": type(exc).__name__
            if exc is not None else None,
            "message": str(exc).splitlines()[0][:300] if exc else None,
            "expected_phase": expected}


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def _axes(kw, shape):
    a = kw.get("axis", -1)
    a = [a] if isinstance(a, (int, float)) else list(a)
    try:
        return [int(v) % len(shape) for v in a]
    except (TypeError, ValueError):
        return []


# ---------------------------------------------------------------- main


def cases_for(layer, seed=None, count=24):
    """The targeted cases plus `count` random ones. seed=None: the committed
    golden's seeds; another seed (live mode) gives other random cases."""
    base = 20261123 if layer == "keras" else 20261124
    rng = np.random.default_rng(base if seed is None else (base, seed))
    cases = targeted_cases(layer) + [random_case(rng, i, layer)
                                     for i in range(count)]
    if seed is not None:
        for c in cases:
            c["id"] += "_s%d" % seed
    return cases


def generate(layer, tf, tf_keras=None, only=None, seed=None):
    results = []
    for case in cases_for(layer, seed):
        if only and case["id"] not in only:
            continue
        c = dict(case)
        try:
            if layer == "keras":
                c["expected"] = run_keras_case(tf, tf_keras, case)
            else:
                c["expected"] = run_v1_case(tf, case)
        except Exception as e:  # noqa: BLE001 -- recorded as an error case
            c["expected"] = None
            c["tf_error"] = "%s: %s" % (type(e).__name__,
                                        str(e).splitlines()[0][:300])
            print("  %s -> TF error %s" % (case["id"], c["tf_error"]),
                  file=sys.stderr)
        results.append(c)
    errors = []
    for name, kw, shape, phase in ERROR_CASES:
        if layer == "keras":
            errors.append(run_error_case(
                tf, tf_keras.layers.BatchNormalization, name, kw, shape,
                phase, False))
        else:
            errors.append(run_error_case(
                tf, tf.compat.v1.layers.BatchNormalization, name, kw, shape,
                phase, True))
    return {"meta": {"generator": "tools/make_parity_golden.py",
                     "tensorflow": tf.__version__,
                     "layer": layer,
                     "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS",
                                              "default")},
            "cases": results, "errors": errors}


def import_tf(behavior):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    import tensorflow as tf
    import tf_keras
    if behavior == "compat_v1":
        tf.compat.v1.disable_v2_behavior()
    return tf, tf_keras


def write(doc, path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(doc, f, indent=None, separators=(",", ":"), sort_keys=True)
        f.write("\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--behavior", choices=["keras", "compat_v1", "both"],
                    default="both")
    ap.add_argument("--out", default=OUT_DIR)
    ap.add_argument("--seed", type=int, default=None,
                    help="other random cases (live mode); default: the "
                    "committed golden's")
    args = ap.parse_args()
    if args.behavior == "both":
        for b in ("keras", "compat_v1"):
            cmd = [sys.executable, os.path.abspath(__file__), "--behavior", b,
                   "--out", args.out]
            if args.seed is not None:
                cmd += ["--seed", str(args.seed)]
            subprocess.check_call(cmd)
        return
    tf, tf_keras = import_tf(args.behavior)
    doc = generate(args.behavior, tf, tf_keras, seed=args.seed)
    path = os.path.join(args.out, args.behavior + ".json")
    write(doc, path)
    print("wrote %s: %d cases, %d error probes" %
          (path, len(doc["cases"]), len(doc["errors"])))


if __name__ == "__main__":
    main()
