"""Replays a golden case (tools/make_parity_golden.py) through bnorm and
compares every recorded quantity. Shared by test_parity.py (committed golden
data, no TensorFlow) and test_live.py (TensorFlow in-process)."""
from __future__ import annotations

import numpy as np

import bnorm
from make_parity_golden import broadcast_shape, dec

# Tolerances: |bnorm - tf| <= rtol * |tf| + rtol * max(|tf|) over the tensor
# (norm-wise relative, so values that cancel to ~0 are judged against the
# tensor's scale). float16 results may differ by one float16 ulp (the
# float32 result rounds to the other neighbour).
RTOL = {
    "y": 1e-5, "dx": 1e-5, "dgamma": 1e-5, "dbeta": 1e-5,
    "dgamma_reg": 1e-5, "dbeta_reg": 1e-5, "weights": 1e-5,
    "losses": 1e-5, "constraint": 1e-5,
}


# float64 layers: both sides compute in float64 in different orders; the
# differences are a few hundred float64 ulps of the tensor's scale.
RTOL64 = 1e-12


class Mismatch(AssertionError):
    pass


def gain(x, y, axes):
    """max over channels of spread(y) / spread(x): the size of |s * rho|,
    the factor by which dx's terms scale dy (s = gamma * a_s * r)."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    rank = x.ndim
    axes = [a % rank for a in axes]
    rest = [i for i in range(rank) if i not in axes]
    xc = np.transpose(x, rest + axes).reshape(-1, int(np.prod(
        [x.shape[a] for a in axes])))
    yc = np.transpose(y, rest + axes).reshape(xc.shape)
    sx = np.ptp(xc, axis=0)
    sy = np.ptp(yc, axis=0)
    ok = sx > 0
    return float(np.max(sy[ok] / sx[ok])) if ok.any() else 0.0


def compare(actual, expected, what, rtol, term_scale=0.0):
    a = np.asarray(actual)
    e = np.asarray(expected)
    if a.shape != e.shape:
        raise Mismatch("%s: shape %s, expected %s" % (what, a.shape, e.shape))
    if a.dtype != e.dtype:
        raise Mismatch("%s: dtype %s, expected %s" % (what, a.dtype, e.dtype))
    if e.size == 0:
        return 0.0
    af = a.astype(np.float64)
    ef = e.astype(np.float64)
    err = np.abs(af - ef)
    scale = max(float(np.max(np.abs(ef))), term_scale)
    bound = rtol * np.abs(ef) + rtol * scale + 1e-30
    if e.dtype == np.float16:
        bound = np.maximum(bound, np.spacing(np.abs(e)).astype(np.float64))
    if not np.all(err <= bound):
        i = int(np.argmax(err - bound))
        raise Mismatch(
            "%s: max error %.3g at flat index %d (bnorm %r, tf %r; bound "
            "%.3g, tensor scale %.3g)" % (what, err.flat[i], i,
                                          af.flat[i], ef.flat[i],
                                          bound.flat[i], scale))
    return float(np.max(err / (np.abs(ef) + scale + 1e-30)))


# ------------------------------------------------------------ fp64 reference
#
# When bnorm and TensorFlow differ by more than the tolerance, the quantity is
# recomputed in float64 from the spec's formulas. If bnorm is within the
# tolerance of that reference and TensorFlow is further from it than bnorm,
# the difference is TensorFlow's float32 rounding (its non-fused graph
# computes y = x*inv + (offset - mean*inv) and differentiates through
# sum(dy*x) - mean*sum(dy), which cancel when |mean| >> spread); the case
# passes and the event is recorded in TF_ROUNDING.

TF_ROUNDING = []


def reference(case, layer, weights_before, x, dy, training, adj_values):
    kw = case["kwargs"]
    eps = float(np.float32(kw.get("epsilon", 1e-3)))
    vbs = kw.get("virtual_batch_size")
    keras = case["layer"] == "keras"
    train = bool(training) and not (keras and kw.get("trainable") is False)
    x = np.asarray(x, np.float64)
    dy = np.asarray(dy, np.float64)
    rank = x.ndim
    axes = sorted(a - (1 if vbs else 0) for a in layer.axis)
    rest = [i for i in range(rank) if i not in axes]
    perm = rest + axes
    C = int(np.prod([x.shape[a] for a in axes]))
    X = np.transpose(x, perm).reshape(-1, C)
    DY = np.transpose(dy, perm).reshape(-1, C)
    W = {v.short_name: np.asarray(w, np.float64).reshape(-1)
         for v, w in zip(layer.weights, weights_before)}
    gamma = W.get("gamma", np.ones(C))
    beta = W.get("beta", np.zeros(C))
    if not train:
        rho = 1.0 / np.sqrt(W["moving_variance"] + eps)
        xh = (X - W["moving_mean"]) * rho
        Y = gamma * xh + beta
        DX = gamma * rho * DY
        dg, db = (DY * xh).sum(0), DY.sum(0)
        rho = rho * np.abs(gamma)
    else:
        rows = X.shape[0]
        if vbs:
            per = rows // x.shape[0]
            group = (np.arange(rows) // per) % (x.shape[0] // vbs)
        else:
            group = np.zeros(rows, int)
        G = group.max() + 1
        mu = np.stack([X[group == g].mean(0) for g in range(G)])
        var = np.stack([((X[group == g] - mu[g]) ** 2).mean(0)
                        for g in range(G)])
        a_s, a_b = np.ones(C), np.zeros(C)
        if case["adjustment"]:
            bshape = broadcast_shape(layer.axis, rank, list(x.shape))
            a_s, a_b = [np.transpose(np.broadcast_to(
                np.asarray(a, np.float64), bshape).reshape(
                [1] * (rank - len(bshape)) + list(bshape)), perm
            ).reshape(-1) for a in adj_values]
        r, d = np.ones(C), np.zeros(C)
        if kw.get("renorm"):
            sb = np.sqrt(var.mean(0) + eps)
            sr = np.maximum(W["renorm_stddev"], np.sqrt(eps))
            r = sb / sr
            d = (mu.mean(0) - W["renorm_mean"]) / sr
            clip = kw.get("renorm_clipping") or {}
            if "rmin" in clip:
                r = np.maximum(r, clip["rmin"])
            if "rmax" in clip:
                r = np.minimum(r, clip["rmax"])
            if "dmax" in clip:
                d = np.clip(d, -clip["dmax"], clip["dmax"])
        rho = 1.0 / np.sqrt(var[group] + eps)
        xh = (X - mu[group]) * rho
        Y = gamma * (a_s * (r * xh + d) + a_b) + beta
        DX = np.empty_like(X)
        for g in range(G):
            m = group == g
            dyg, xhg = DY[m], xh[m]
            DX[m] = gamma * a_s * r * rho[m] * (
                dyg - dyg.mean(0) - xhg * (dyg * xhg).mean(0))
        dg = (DY * (a_s * (r * xh + d) + a_b)).sum(0)
        db = DY.sum(0)
        rho = rho * np.abs(gamma * a_s * r)
    inv = np.argsort(perm)
    shp = [x.shape[i] for i in perm]
    return {"y": np.transpose(Y.reshape(shp), inv),
            "dx": np.transpose(DX.reshape(shp), inv),
            "dgamma": dg, "dbeta": db,
            # the size of dx's terms, |gamma*a_s*r*rho*dy|
            "dx_term": float(np.max(rho) * np.max(np.abs(DY)))}


def make_layer(case, adj_state):
    cls = bnorm.BatchNormalization if case["layer"] == "keras" else \
        bnorm.compat.v1.BatchNormalization
    kw = dict(case["kwargs"])
    if case["layer"] == "compat_v1" and case.get("dtype") == "float64":
        # TF1 takes float64 from the first input; bnorm's layer is built
        # here before any input, so it is told.
        kw["dtype"] = "float64"
    if case["adjustment"]:
        def adjustment(shape):
            adj_state["shapes"].append(list(shape))
            return adj_state["values"]
        kw["adjustment"] = adjustment
    return cls(**kw)


def build_shape(case):
    shape = case["shape"]
    rank = len(shape)
    axis = case["kwargs"].get("axis", -1)
    axes = [axis] if isinstance(axis, int) else list(axis)
    if 0 in [a % rank for a in axes]:
        return list(shape)
    return [None] + list(shape[1:])


def replay(case, expected):
    """Runs the case; returns {quantity: worst relative error}. Raises
    Mismatch on the first quantity out of tolerance."""
    worst = {}
    # A float32 layer fed float64 returns float64 dx of float32 precision.
    float64_layer = case.get("dtype") == "float64" and (
        case["layer"] == "compat_v1" or
        case["kwargs"].get("dtype") == "float64")

    def check(actual, exp, what, key, term_scale=0.0, ref=None):
        rtol = RTOL64 if float64_layer else RTOL[key]
        try:
            r = compare(actual, exp, what, rtol, term_scale)
        except Mismatch as first:
            if ref is None or np.asarray(exp).dtype != np.float32:
                raise
            exact = ref().reshape(np.shape(exp))
            ours = np.max(np.abs(np.asarray(actual, np.float64) - exact))
            tf = np.max(np.abs(np.asarray(exp, np.float64) - exact))
            scale = max(float(np.max(np.abs(exact))), term_scale)
            if key == "dx":
                scale = max(scale, cache["dx_term"])
            if not (ours <= RTOL[key] * scale and tf > ours):
                raise Mismatch("%s (fp64 reference: bnorm error %.3g, tf "
                               "error %.3g)" % (first, ours, tf)) from None
            TF_ROUNDING.append("%s %s: tf error %.3g vs fp64, bnorm %.3g" %
                               (case["id"], what, tf, ours))
            r = ours / scale
        worst[key] = max(worst.get(key, 0.0), r)

    adj = {"values": None, "shapes": []}
    if expected is None:  # TensorFlow rejected it: bnorm must too
        try:
            layer = make_layer(case, adj)
            layer.build(build_shape(case))
            rng = np.random.default_rng(0)
            layer(rng.normal(size=case["shape"]).astype(np.float32),
                  training=True)
        except (ValueError, TypeError):
            return worst
        raise Mismatch("TensorFlow raised %s but bnorm accepted the case" %
                       case.get("tf_error"))
    layer = make_layer(case, adj)
    layer.build(build_shape(case))
    names = [v.name.split("/")[-1].split(":")[0] for v in layer.weights]
    if names != expected["weight_names"]:
        raise Mismatch("weights %s, expected %s" % (names,
                                                    expected["weight_names"]))
    layer.set_weights([dec(w) for w in expected["initial_weights"]])
    if layer.fused != expected["fused"]:
        raise Mismatch("fused=%s, expected %s" % (layer.fused,
                                                  expected["fused"]))
    defer = case["layer"] == "compat_v1"
    before = [dec(w) for w in expected["initial_weights"]]
    for k, st in enumerate(expected["steps"]):
        x = dec(st["x"])
        dy = dec(st["dy"])
        if case["adjustment"]:
            adj["values"] = (dec(st["adj_scale"]), dec(st["adj_bias"]))
        if st["training"] is None:
            y = layer(x, defer_updates=defer)
        else:
            y = layer(x, training=st["training"], defer_updates=defer)
        tag = "step %d (training=%s)" % (k, st["training"])
        # TensorFlow's non-fused output is x*inv + (offset - mean*inv): its
        # rounding is relative to |x*inv| = gain*|x|, which exceeds |y| when
        # the input's mean is large against its spread.
        axes = [a - (1 if case["kwargs"].get("virtual_batch_size") else 0)
                for a in layer.axis]
        g = gain(x, dec(st["y"]), axes)
        cache = {}

        def ref(q, x=x, dy=dy, st=st, before=before):
            if not cache:
                cache.update(reference(case, layer, before, x, dy,
                                       st["training"], adj["values"]))
            return lambda: cache[q]
        check(y, dec(st["y"]), tag + " y", "y",
              g * float(np.max(np.abs(x.astype(np.float64)))), ref("y"))
        dx, dgamma, dbeta = layer.backward(dy)
        # dx = s*rho*(dy - mean(dy) - xhat*mean(dy*xhat)) is a difference of
        # terms of size |s*rho*dy|; it is judged against that size (tiny
        # ghost batches make it cancel to rounding noise).
        term = g * float(np.max(np.abs(dy)))
        check(dx, dec(st["dx"]), tag + " dx", "dx", term, ref("dx"))
        for nm, g in (("dgamma", dgamma), ("dbeta", dbeta)):
            if nm in st:
                check(g, dec(st[nm]), tag + " " + nm, nm, 0.0, ref(nm))
            elif g is not None:
                raise Mismatch("%s %s: bnorm has it, tf not" % (tag, nm))
        if "dgamma_reg" in st or "dbeta_reg" in st:
            _, dgamma, dbeta = layer.backward(dy, add_regularization=True)
            for nm, g in (("dgamma_reg", dgamma), ("dbeta_reg", dbeta)):
                if nm in st:
                    check(g, dec(st[nm]), tag + " " + nm, nm)
        if defer:
            layer.apply_updates()
        for v, w in zip(layer.weights, st["weights"]):
            check(v.numpy(), dec(w), tag + " " + v.name, "weights")
        before = [dec(w) for w in st["weights"]]
        losses = layer.losses
        if len(losses) != len(st["losses"]):
            raise Mismatch("%s: %d losses, expected %d" %
                           (tag, len(losses), len(st["losses"])))
        loss_type = np.dtype(layer.variable_dtype or "float32").type
        for i, (a, e) in enumerate(zip(losses, st["losses"])):
            check(loss_type(a), loss_type(e), tag + " loss %d" % i,
                  "losses")
    if case["adjustment"] and expected.get("adjustment_shapes"):
        if adj["shapes"] != expected["adjustment_shapes"]:
            raise Mismatch("adjustment called with %s, expected %s" %
                           (adj["shapes"], expected["adjustment_shapes"]))
    cons = expected.get("constraint") or {}
    by_name = {v.short_name: v for v in layer.weights}
    for nm in ("gamma", "beta"):
        if nm + "_before" in cons:
            by_name[nm].assign(dec(cons[nm + "_before"]))
    layer.apply_constraints()
    for nm in ("gamma", "beta"):
        if nm + "_after" in cons:
            check(by_name[nm].numpy(), dec(cons[nm + "_after"]),
                  "constraint " + nm, "constraint")
    return worst


def config_differences(case, expected, layer=None):
    """Keys of get_config() whose values differ from tf_keras' (Keras layer
    only; the TF1 layer's initializer configs carry a dtype we omit)."""
    if layer is None:
        adj = {"values": None, "shapes": []}
        layer = make_layer(case, adj)
        layer.build(build_shape(case))
    ours = layer.get_config()
    theirs = expected["config"]
    diffs = []
    for key in sorted(set(ours) | set(theirs)):
        if key == "name":
            continue
        a, b = ours.get(key, "<missing>"), theirs.get(key, "<missing>")
        if _norm(a) != _norm(b):
            diffs.append((key, a, b))
    return diffs


def _norm(v):
    if isinstance(v, dict):
        return {k: _norm(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_norm(x) for x in v]
    if isinstance(v, float):
        return float(np.float32(v))
    return v


__all__ = ["replay", "compare", "config_differences", "Mismatch",
           "broadcast_shape", "TF_ROUNDING"]
