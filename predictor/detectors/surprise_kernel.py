# mypy: disable-error-code="no-untyped-def"
"""The Surprise detector's row loop, compiled (:mod:`predictor.jit`).

One call scores then learns every row of a batch in order. Entities are independent, so
walking the rows one by one is the same computation as the numpy rounds it replaced
(each round held an entity at most once), with no fixed cost per round: a 60-row tick
and a week of history cost the same per row. The steps, per row of entity ``e`` (the
module docstring of :mod:`predictor.detectors.surprise` says why each is there):

standardise each metric → per-metric bits from the cached tail tables (then the
histogram learns) → normal scores ``g`` → residual off the PCA subspace → three row
statistics → bits again → Fisher's combination → the baseline learns → ``g`` is
buffered for the covariance → fold / PCA refit / calibration refresh when due.

The state is the detector's own arrays, updated in place; the buffered normal scores
stay float16 (as ``uint16`` bit patterns here: numba has no float16 on CPU), rounded
to nearest-even exactly as numpy's cast does.

Pinned to the numpy implementation's recorded outputs by
``tests/unit/test_surprise_kernel.py``.
"""

from __future__ import annotations

import math

import numpy as np

from predictor.jit import kernel

LN2 = math.log(2.0)
LOG2_10 = math.log2(10.0)
LOG2_E = math.log2(math.e)


@kernel
def to_half_bits(v: float) -> np.uint16:
    """``v`` rounded to the nearest float16 (ties to even), as its bit pattern."""
    if math.isnan(v):
        return np.uint16(0x7E00)
    sign = 0x8000 if math.copysign(1.0, v) < 0.0 else 0
    a = abs(v)
    if a >= 65520.0:
        return np.uint16(sign | 0x7C00)
    if a < 6.103515625e-05:  # below the smallest normal: multiples of 2**-24
        return np.uint16(sign | int(np.rint(a * 16777216.0)))
    m, ex = math.frexp(a)  # a = m * 2**ex, 0.5 <= m < 1
    e = ex - 1
    r = int(np.rint(math.ldexp(a, 10 - e)))  # 1024 .. 2048
    if r == 2048:
        r = 1024
        e += 1
    if e > 15:
        return np.uint16(sign | 0x7C00)
    return np.uint16(sign | ((e + 15) << 10) | (r - 1024))


@kernel
def from_half_bits(b: np.uint16) -> np.float32:
    """The float16 with bit pattern ``b``, as float32 (exact)."""
    bi = int(b)
    sign = -1.0 if bi & 0x8000 else 1.0
    ex = (bi >> 10) & 0x1F
    frac = bi & 0x3FF
    if ex == 0:
        return np.float32(sign * math.ldexp(float(frac), -24))
    if ex == 31:
        return np.float32(sign * math.inf if frac == 0 else math.nan)
    return np.float32(sign * math.ldexp(float(1024 + frac), ex - 25))


@kernel
def tail_bits(surv, q, beta, e, s, t, width, n_bins):
    """Bits of value ``t`` of statistic ``s`` of entity ``e`` from cached tables
    (:meth:`predictor.detectors.calibration.TailTables.bits`, one cell)."""
    pos = min(max(t / width, 0.0), n_bins - 1e-9)
    b = int(pos)
    frac = pos - b
    s0 = surv[e, s, b]
    s1 = surv[e, s, b + 1]
    p = max(s0 - frac * (s0 - s1), 0.0)
    out = -math.log2(min(max(p, 1e-300), 1.0))
    qv = q[e, s]
    if t > qv:
        bits_tail = LOG2_10 + (t - qv) / beta[e, s] * LOG2_E
        out = min(bits_tail, out)
    return out


@kernel
def tail_learn(hist, weight, e, s, t, width, n_bins, inv_decay):
    """One more value ``t`` in the lazily decayed histogram (``TailTables.learn``)."""
    w = weight[e, s] * inv_decay
    weight[e, s] = w
    b = min(max(int(t / width), 0), n_bins - 1)
    hist[e, s, b] += w


@kernel
def tail_refresh(hist, weight, surv, q, beta, e, width, centers):
    """Fold the lazy decay into ``e``'s histograms; rebuild its tables
    (``TailTables.refresh`` / ``TailTables.tables``, one entity)."""
    n_stats, n_bins = hist.shape[1], hist.shape[2]
    above = np.empty(n_bins)
    for s in range(n_stats):
        w = weight[e, s]
        for b in range(n_bins):
            hist[e, s, b] = hist[e, s, b] / w
        weight[e, s] = np.float32(1.0)
        acc = 0.0
        for b in range(n_bins - 1, -1, -1):
            acc += float(hist[e, s, b])
            above[b] = acc
        total = max(above[0], 1e-300)
        n_over = 0
        for b in range(n_bins):
            share = above[b] / total
            surv[e, s, b] = np.float32(share)
            if share >= 0.1:
                n_over += 1
        surv[e, s, n_bins] = np.float32(0.0)
        q_bin = max(n_over - 1, 0)
        hq = float(hist[e, s, q_bin])
        ratio = (above[q_bin] / total - 0.1) / max(hq / total, 1e-12)
        qv = q_bin * width + width * min(max(ratio, 0.0), 1.0)
        m_above = 0.0
        dot = 0.0
        for b in range(n_bins):
            if centers[b] > qv:
                h = float(hist[e, s, b])
                m_above += h
                dot += h * centers[b]
        excess = dot - qv * m_above
        q[e, s] = np.float32(qv)
        beta[e, s] = np.float32(max(excess / max(m_above, 1e-12), width))


@kernel
def fold(cov, gbuf, e, n, count, cov_alpha):
    """Fold ``e``'s ``n`` buffered rows into its EWMA covariance (``Surprise._fold``)."""
    f = cov.shape[1]
    w = np.zeros(n)
    for j in range(n):
        c = count - n + j
        if c >= 2:
            w[j] = max(cov_alpha, 1.0 / max(c - 1, 1))
    keep = np.empty(n + 1)  # keep[j] = prod_{i >= j} (1 - w_i); keep[n] = 1
    keep[n] = 1.0
    acc = 1.0
    for j in range(n - 1, -1, -1):
        acc = acc * (1.0 - w[j])
        keep[j] = acc
    g = np.empty((n, f), dtype=np.float32)
    wt = np.empty(n, dtype=np.float32)
    for j in range(n):
        wt[j] = np.float32(w[j] * keep[j + 1])
        for a in range(f):
            g[j, a] = from_half_bits(gbuf[e, j, a])
    k0 = np.float32(keep[0])
    for a in range(f):
        for b in range(f):
            s = np.float32(0.0)
            for j in range(n):
                s += (wt[j] * g[j, a]) * g[j, b]
            cov[e, a, b] = k0 * cov[e, a, b] + s


@kernel
def refit(cov, proj, resid, e, var_explained):
    """PCA of ``e``'s covariance: the residual projector and expected residual
    (``Surprise._refit``, one entity)."""
    f = cov.shape[1]
    c = np.empty((f, f))
    for a in range(f):
        for b in range(f):
            c[a, b] = float(cov[e, a, b])
    vals, vecs = np.linalg.eigh(c)  # ascending
    total = 0.0
    for k in range(f):
        vals[k] = max(vals[k], 0.0)
        total += vals[k]
    tot = max(total, 1e-12)
    keep = np.zeros(f, dtype=np.bool_)
    top = 0.0
    for k in range(f - 1, -1, -1):  # the largest first
        top += vals[k]
        keep[k] = (top / tot - vals[k] / tot) < var_explained
    keep[f - 1] = True
    res = 0.0
    for k in range(f):
        if not keep[k]:
            res += vals[k]
    for a in range(f):
        for b in range(f):
            s = 0.0
            for k in range(f):
                if keep[k]:
                    s += vecs[a, k] * vecs[b, k]
            proj[e, a, b] = np.float32((1.0 if a == b else 0.0) - s)
    resid[e] = np.float32(max(res, 1e-3 * tot))


@kernel
def surprise_rows(
    keys,
    x,
    out,
    params,
    count,
    mean,
    var,
    slow_var,
    cov,
    proj,
    resid,
    gbuf,
    nbuf,
    m_hist,
    m_weight,
    m_surv,
    m_q,
    m_beta,
    m_centers,
    r_hist,
    r_weight,
    r_surv,
    r_q,
    r_beta,
    r_centers,
):
    """Score then learn rows ``x`` of entities ``keys``; bits into ``out``.

    ``params``: alpha, slow share, slow sd share, clip_z, rel_sd_floor, z cap, warm-up,
    refit_every, calib_every, fold rows, cov_alpha, var_explained, metric grid width,
    metric bins, metric 1/decay, row grid width, row bins, row 1/decay.
    """
    alpha, slow_share, slow_sd_share, clip_z = params[0], params[1], params[2], params[3]
    rel_floor, z_cap = params[4], params[5]
    warmup, refit_every, calib_every = int(params[6]), int(params[7]), int(params[8])
    fold_rows, cov_alpha, var_explained = int(params[9]), params[10], params[11]
    m_width, m_bins, m_inv = params[12], int(params[13]), np.float32(params[14])
    r_width, r_bins, r_inv = params[15], int(params[16]), np.float32(params[17])
    f = x.shape[1]
    n_stats = r_hist.shape[1]
    g = np.empty(f)
    mbits = np.empty(f)
    stat = np.empty(n_stats)
    for i in range(keys.shape[0]):
        e = keys[i]
        c = count[e]
        a = max(alpha, 1.0 / (c + 1.0))
        sa = max(alpha * slow_share, 1.0 / (c + 1.0))
        warmed = c >= warmup
        n_present = 0
        m_sum = 0.0
        m_max = -math.inf
        for j in range(f):
            xv = x[i, j]
            mu = mean[e, j]
            if not math.isfinite(xv):
                g[j] = 0.0
                mbits[j] = 0.0
                m_max = max(m_max, 0.0)
                continue
            n_present += 1
            seed = math.isnan(mu)
            if seed:
                mu = xv
            sv = slow_var[e, j]
            sd = max(math.sqrt(var[e, j]), slow_sd_share * math.sqrt(sv))
            sd = max(sd, max(1e-12, rel_floor * abs(mu)))
            z = min(max((xv - mu) / sd, -z_cap), z_cap)
            # Soft clip beyond clip_z: ±(c + log(|z| / c)), monotone and unbounded, so a
            # metric a billion sd out weighs like a few dozen sd, yet 20 sd outranks 9;
            # a metric that never varied counts at most clip_z sd.
            if sv > 0.0:
                zs = z
                if abs(z) > clip_z:
                    zs = math.copysign(clip_z + math.log(abs(z) / clip_z), z)
            else:
                zs = min(max(z, -clip_z), clip_z)
            tm = zs * zs
            mb = tail_bits(m_surv, m_q, m_beta, e, j, tm, m_width, m_bins)
            if warmed:
                tail_learn(m_hist, m_weight, e, j, tm, m_width, m_bins, m_inv)
            mbits[j] = mb
            m_sum += mb
            m_max = max(m_max, mb)
            sign = 1.0 if z > 0.0 else (-1.0 if z < 0.0 else 0.0)
            g[j] = sign * math.sqrt(2.0 * LN2 * mb)
            # The baseline learns (the first reading only seeds it).
            if seed:
                mean[e, j] = xv
            else:
                xb = min(max(xv, mu - clip_z * sd), mu + clip_z * sd) if warmed else xv
                diff = xb - mu
                mean[e, j] = mu + a * diff
                var[e, j] = (1 - a) * (var[e, j] + a * diff * diff)
                slow_var[e, j] = (1 - sa) * (sv + sa * diff * diff)
        # Residual off the principal subspace, in float32 as the stored projector.
        res_e = float(resid[e])
        r2 = 0.0
        for p in range(f):
            acc = np.float32(0.0)
            for q in range(f):
                acc += proj[e, p, q] * np.float32(g[q])
            r2 += float(acc) * float(acc)
        r2 = r2 / max(res_e, 1e-12)
        npres = max(n_present, 1)
        stat[0] = max(m_max - math.log2(npres), 0.0)
        stat[1] = m_sum / npres
        stat[2] = min(r2, 1e6)
        have_pca = res_e > 0.0
        total_bits = 0.0
        for k in range(n_stats):
            b = tail_bits(r_surv, r_q, r_beta, e, k, stat[k], r_width, r_bins)
            if k == 2 and not have_pca:
                b = 0.0
            total_bits += max(b, 0.0)
            if warmed and (have_pca or k != 2):
                tail_learn(r_hist, r_weight, e, k, stat[k], r_width, r_bins, r_inv)
        if warmed:  # Fisher's method over the row statistics
            y = total_bits * LN2
            series = 1.0
            term = 1.0
            for k in range(1, n_stats):
                term = term * y / k
                series = series + term
            out[i] = max(total_bits - math.log2(series), 0.0)
        else:
            out[i] = 0.0
        # The covariance learns the clipped normal scores, buffered.
        nb = nbuf[e]
        for j in range(f):
            gbuf[e, nb, j] = to_half_bits(min(max(g[j], -clip_z), clip_z))
        nb += 1
        new_count = c + 1
        count[e] = new_count
        do_refit = new_count >= warmup and (new_count % refit_every == 0 or new_count == warmup)
        if do_refit or nb >= fold_rows:
            nbuf[e] = 0
            fold(cov, gbuf, e, nb, new_count, cov_alpha)
        else:
            nbuf[e] = nb
        if do_refit:
            refit(cov, proj, resid, e, var_explained)
        since = new_count - warmup
        if since > 0 and (since % calib_every == 0 or since == 8 or since == 16):
            tail_refresh(m_hist, m_weight, m_surv, m_q, m_beta, e, m_width, m_centers)
            tail_refresh(r_hist, r_weight, r_surv, r_q, r_beta, e, r_width, r_centers)
