"""The risk model's trees as flat arrays and one compiled loop (:mod:`predictor.jit`).

The engine scores a tick segment of ~10-60 rows at a time. ``Booster.predict`` pays
~30 µs a call (its Python wrapper and C API set-up) and then walks every tree node by
node, ~15 µs a row for the shipped 200 trees on this machine. Here a trained booster is
compiled once (~50 ms) into numpy arrays, from its model text (LightGBM's own arrays),
and scored by a numba kernel with ~5 µs a call and ~5.5 µs a row: QuickScorer's leaf
bitmasks (:class:`Bitmasks`), which trade the walk's unpredictable branches for a few
thousand ANDs a row. Trees over 64 leaves (bitmasks hold 64) are walked node by node
(``method="walk"``: cheaper than LightGBM per call, ~20 % dearer per row).
``benchmarks/bench_risk_trees.py`` has the figures: ~2.8x LightGBM at 30-120 rows,
~4.7x for one row, 2.6x at 5,000.

It computes what LightGBM computes, not an approximation of it (``Tree::GetLeaf`` and
``Tree::NumericalDecision`` in LightGBM's ``include/LightGBM/tree.h``, v4):

- each input is widened to float64; an absolute value at most ``kZeroThreshold``
  (``1e-35f``, the float32 literal widened: 1.0000000180025095e-35) is read as 0.0, as
  LightGBM's dense-row reader drops such values and the predictor fills absent features
  with zeros (``RowPairFunctionFromDenseMatric``);
- at a split with missing type None or Zero, NaN is read as 0.0;
- missing type Zero sends 0.0, and missing type NaN sends NaN, to the default side
  (``default_left``); any other value goes left when ``value <= threshold`` (so +inf goes
  right, -inf left);
- the raw score is the sum of the trees' leaf values in tree order, from 0.0, in float64
  (``GBDT::PredictRaw``; the initial score is already folded into the first tree); a
  binary objective's probability is ``1 / (1 + exp(-sigmoid * raw))``.

The trees are the ones ``booster.predict`` uses by default (``model_to_string()`` and
``predict`` both stop at the best iteration when early stopping set one). Categorical
splits, linear trees, multiclass and averaged (random-forest) models are refused with a
:class:`~predictor.errors.ModelError` naming what was found; :class:`~predictor.risk.RiskModel`
then keeps scoring with LightGBM. ``tests/unit/test_risk_trees.py`` pins raw scores to
``booster.predict(x, raw_score=True)`` on the shipped model and on models fitted with
NaNs, with ``zero_as_missing``, at every threshold exactly and one ulp either side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from predictor.errors import ModelError
from predictor.jit import kernel

#: LightGBM's ``kZeroThreshold`` (``const double kZeroThreshold = 1e-35f``): a float32
#: literal widened, so a hair above the double ``1e-35``.
K_ZERO_THRESHOLD = float(np.float32(1e-35))

#: Bits of LightGBM's ``decision_type`` byte that are used here (``tree.h``).
DEFAULT_LEFT_MASK = 2
MISSING_NONE, MISSING_ZERO, MISSING_NAN = 0, 1, 2

#: 64 bits set: a tree's leaves all standing.
ALL_ONES = (1 << 64) - 1
#: De Bruijn sequence for the index of a uint64's lowest set bit (one multiply, one
#: table look-up; numba has no count-trailing-zeros).
DE_BRUIJN = 0x03F79D71B4CB0A89
LOWEST_BIT = np.zeros(64, dtype=np.int32)
for _k in range(64):
    LOWEST_BIT[(((1 << _k) * DE_BRUIJN) & ALL_ONES) >> 58] = _k
del _k

#: Columns of :attr:`CompiledTrees.nodes`.
FEATURE, LEFT, RIGHT, DECISION = 0, 1, 2, 3


@dataclass(frozen=True, eq=False)
class CompiledTrees:
    """A booster's trees as flat arrays.

    Attributes
    ----------
    nodes
        int32 ``(n_nodes, 4)``: split feature, left child, right child, and LightGBM's
        decision byte (``default_left`` in bit 1, missing type in bits 2-3). A child
        ``>= 0`` is a node index; a child ``c < 0`` is leaf ``~c``.
    thresholds
        float64 ``(n_nodes,)``: a row goes left when its value ``<=`` the threshold.
    leaf_values
        float64 ``(n_leaves,)``: every tree's leaf outputs, shrinkage included.
    roots
        int32 ``(n_trees,)``: each tree's root, encoded as a child (a one-leaf tree's
        root is its leaf).
    n_features
        Columns an input must have (LightGBM's ``max_feature_idx + 1``).
    sigmoid
        The binary objective's sigmoid parameter; None for another objective.
    """

    nodes: np.ndarray
    thresholds: np.ndarray
    leaf_values: np.ndarray
    roots: np.ndarray
    n_features: int
    sigmoid: float | None
    #: The same trees as leaf bitmasks (:class:`Bitmasks`); None when a tree has more
    #: than 64 leaves (then the node walk scores).
    bitmasks: Bitmasks | None = None

    @property
    def n_trees(self) -> int:
        return len(self.roots)

    def raw(self, x: np.ndarray, method: str = "auto") -> np.ndarray:
        """Raw scores (log-odds for a binary model), one per row of ``x``, float64.

        ``method``: ``"bitmask"``, ``"walk"`` (node by node), or ``"auto"`` (bitmask
        where the trees allow it); all give the same numbers."""
        return self._run(x, 0.0, method)

    def proba(self, x: np.ndarray, method: str = "auto") -> np.ndarray:
        """The binary objective's probabilities, as ``booster.predict(x)`` gives them."""
        if self.sigmoid is None:
            raise ModelError("the trees' objective is not binary: no probability to give")
        return self._run(x, self.sigmoid, method)

    def _run(self, x: np.ndarray, sigmoid: float, method: str) -> np.ndarray:
        x = np.asarray(x)
        if x.dtype != np.float32 and x.dtype != np.float64:
            x = x.astype(np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            # The kernels do not check bounds: a narrower row would read past its end.
            raise ModelError(f"the trees take {self.n_features} features, got shape {x.shape}")
        x = np.ascontiguousarray(x)
        b = self.bitmasks
        if method == "walk" or (method == "auto" and b is None):
            return _walk(x, self.nodes, self.thresholds, self.leaf_values, self.roots, sigmoid)
        if method not in ("auto", "bitmask"):
            raise ValueError(f"method {method!r}: 'auto', 'bitmask' or 'walk'")
        if b is None:
            raise ModelError("a tree has more than 64 leaves: no bitmasks, use method='walk'")
        return _bitmask(
            x, b.starts, b.thresholds, b.trees, b.masks, b.leaves, b.leaf_start, sigmoid
        )


@dataclass(frozen=True, eq=False)
class Bitmasks:
    """The trees laid out for QuickScorer's traversal (Lucchese et al., SIGIR 2015).

    A tree's leaves are numbered left to right, bit ``k`` for leaf ``k``. A split that
    sends a row right rules out every leaf of its left subtree; the row's leaf is the
    lowest bit left standing once every such split has cleared its bits, whatever order
    they are applied in. So, per feature, the splits are sorted by threshold, and a row
    value ``v`` clears the bits of the splits with ``threshold < v`` (a prefix, stopped at
    the first threshold ``>= v``): ~2,000 ANDs a row for the shipped model, in order
    through memory, no tree walked, no branch that depends on the path. A NaN or a zero
    (after kZeroThreshold) does not compare: what every split sends it right is fixed,
    so its cleared bits are precomputed per feature and tree.

    Attributes
    ----------
    starts
        uint64 ``(3, n_features + 1)``: where each feature's entries begin in the three
        sections of the arrays below: values that compare, zeros, NaNs.
    thresholds
        float64: the compared section's thresholds, ascending per feature.
    trees, masks
        uint32 tree and uint64 mask of each entry (ones but the ruled-out leaves).
    leaves
        float64: leaf values, left to right within each tree.
    leaf_start
        int64 ``(n_trees + 1,)``: where each tree's leaves begin in ``leaves``.
    """

    starts: np.ndarray
    thresholds: np.ndarray
    trees: np.ndarray
    masks: np.ndarray
    leaves: np.ndarray
    leaf_start: np.ndarray


def compile_booster(booster: Any) -> CompiledTrees:
    """``booster``'s trees (a ``lightgbm.Booster``) as :class:`CompiledTrees`.

    Read from ``booster.model_to_string()``, which holds LightGBM's own arrays (and the
    trees ``predict`` uses by default). Not from ``dump_model()``: its JSON cannot say
    ``inf``, so it writes a split that sends NaN-as-missing apart from the rest
    (threshold ``+inf``) as ``1e300``, and ``+inf`` inputs would go the wrong way.

    Raises :class:`~predictor.errors.ModelError`, naming the tree, for what the kernel
    does not evaluate: categorical splits, linear trees, more than one tree per
    iteration, averaged output.
    """
    return compile_text(booster.model_to_string())


def compile_text(text: str) -> CompiledTrees:
    """:func:`compile_booster` from LightGBM's model text.

    >>> text = "\\n".join([
    ...     "max_feature_idx=0", "objective=binary sigmoid:1", "",
    ...     "Tree=0", "num_leaves=2", "num_cat=0", "split_feature=0", "threshold=0.5",
    ...     "decision_type=10", "left_child=-1", "right_child=-2", "leaf_value=-1 2",
    ...     "is_linear=0", "",
    ...     "Tree=1", "num_leaves=1", "num_cat=0", "leaf_value=0.25", "is_linear=0", "",
    ...     "end of trees"])
    >>> trees = compile_text(text)
    >>> trees.raw(np.array([[0.5], [0.75], [np.nan], [np.inf]])).tolist()
    [-0.75, 2.25, -0.75, 2.25]
    """
    header, blocks = _sections(text)
    if int(header.get("num_tree_per_iteration", "1")) != 1:
        raise ModelError(
            f"the model grows {header['num_tree_per_iteration']} trees per iteration "
            "(multiclass): compiled trees take one"
        )
    if "average_output" in header:
        raise ModelError("the model averages its trees (random forest): compiled trees sum them")
    if "max_feature_idx" not in header:
        raise ModelError("not LightGBM model text: no max_feature_idx line")
    objective = header.get("objective", "").split(" ")
    sigmoid = None
    if objective[0] == "binary":
        sigmoid = 1.0
        for part in objective[1:]:
            if part.startswith("sigmoid:"):
                sigmoid = float(part.removeprefix("sigmoid:"))
    nodes, thresholds, leaves, roots = [], [], [], []
    n_nodes = n_leaves = 0
    for name, tree in blocks:
        if tree.get("is_linear", "0") != "0":
            raise ModelError(f"{name} is a linear tree: compiled trees take constant leaves")
        if tree.get("num_cat", "0") != "0":
            raise ModelError(f"{name} has categorical splits: compiled trees take '<=' only")
        leaf = np.array(tree["leaf_value"].split(), dtype=np.float64)
        if int(tree["num_leaves"]) == 1:
            roots.append(~n_leaves)
        else:
            decision = np.array(tree["decision_type"].split(), dtype=np.int32)
            if np.any(decision & 1):  # kCategoricalMask
                raise ModelError(f"{name} has categorical splits: compiled trees take '<=' only")
            children = [
                np.array(tree[side].split(), dtype=np.int32)
                for side in ("left_child", "right_child")
            ]
            # LightGBM's encoding (a node index, or ~leaf), moved past the earlier trees.
            left, right = (np.where(c >= 0, c + n_nodes, ~(~c + n_leaves)) for c in children)
            feature = np.array(tree["split_feature"].split(), dtype=np.int32)
            nodes.append(np.column_stack([feature, left, right, decision]))
            thresholds.append(np.array(tree["threshold"].split(), dtype=np.float64))
            roots.append(n_nodes)
            n_nodes += len(feature)
        leaves.append(leaf)
        n_leaves += len(leaf)
    trees = CompiledTrees(
        nodes=np.ascontiguousarray(np.concatenate(nodes or [np.zeros((0, 4))]), dtype=np.int32),
        thresholds=np.concatenate(thresholds or [np.zeros(0)]).astype(np.float64),
        leaf_values=np.concatenate(leaves or [np.zeros(0)]).astype(np.float64),
        roots=np.array(roots, dtype=np.int32),
        n_features=int(header["max_feature_idx"]) + 1,
        sigmoid=sigmoid,
    )
    if max((len(leaf) for leaf in leaves), default=1) > 64:
        return trees
    return replace(trees, bitmasks=bitmasks(trees))


def bitmasks(trees: CompiledTrees) -> Bitmasks:
    """``trees`` as :class:`Bitmasks` (every tree at most 64 leaves)."""
    nodes, th = trees.nodes, trees.thresholds
    n_nodes = len(th)
    node_tree = np.zeros(n_nodes, dtype=np.int32)
    node_mask: list[int] = [0] * n_nodes
    ranked: list[int] = []  # global leaf numbers, left to right within each tree
    leaf_start = [0]
    for t, root in enumerate(trees.roots.tolist()):
        first = len(ranked)
        # Iterative in-order walk; a node's left subtree holds the leaves ranked
        # [rank when it was entered, rank when its right subtree starts).
        stack: list[tuple[int, int]] = [(root, 0)]
        entered: dict[int, int] = {}
        while stack:
            node, state = stack.pop()
            if node < 0:
                ranked.append(~node)
            elif state == 0:
                node_tree[node] = t
                entered[node] = len(ranked) - first
                stack.append((node, 1))
                stack.append((int(nodes[node, LEFT]), 0))
            else:
                lo, hi = entered[node], len(ranked) - first
                node_mask[node] = ALL_ONES & ~(((1 << (hi - lo)) - 1) << lo)
                stack.append((int(nodes[node, RIGHT]), 0))
        if len(ranked) - first > 64:
            raise ModelError(f"tree {t} has {len(ranked) - first} leaves: bitmasks hold 64")
        leaf_start.append(len(ranked))
    feature = nodes[:, FEATURE]
    default_left = (nodes[:, DECISION] & DEFAULT_LEFT_MASK) != 0
    missing = (nodes[:, DECISION] >> 2) & 3
    # Where a zero goes: the default side under missing type Zero, else 0.0 <= threshold.
    zero_right = ~np.where(missing == MISSING_ZERO, default_left, th >= 0.0)
    # NaN: the default side under NaN or Zero (read as 0.0, then missing); else as 0.0.
    nan_right = ~np.where(missing == MISSING_NONE, th >= 0.0, default_left)
    order = np.lexsort((th, feature))
    n_features = trees.n_features
    starts = np.zeros((3, n_features + 1), dtype=np.uint64)
    all_trees: list[int] = []
    all_masks: list[int] = []
    all_th: list[float] = []
    # Compared section: one entry per split, by feature then threshold.
    sorted_feature = feature[order]
    starts[0] = np.searchsorted(sorted_feature, np.arange(n_features + 1))
    all_trees += node_tree[order].tolist()
    all_masks += [node_mask[n] for n in order.tolist()]
    all_th += th[order].tolist()
    for s, right in ((1, zero_right), (2, nan_right)):
        merged: dict[tuple[int, int], int] = {}
        for n in np.flatnonzero(right).tolist():
            key = (int(feature[n]), int(node_tree[n]))
            merged[key] = merged.get(key, ALL_ONES) & node_mask[n]
        keys = sorted(merged)
        offset = len(all_trees)
        starts[s] = offset + np.searchsorted(
            np.array([f for f, _ in keys], dtype=np.int64), np.arange(n_features + 1)
        )
        all_trees += [t for _, t in keys]
        all_masks += [merged[k] for k in keys]
        all_th += [0.0] * len(keys)
    return Bitmasks(
        starts=starts,
        thresholds=np.array(all_th, dtype=np.float64),
        trees=np.array(all_trees, dtype=np.uint32),
        masks=np.array(all_masks, dtype=np.uint64),
        leaves=trees.leaf_values[np.array(ranked, dtype=np.int64)],
        leaf_start=np.array(leaf_start, dtype=np.int64),
    )


def _sections(text: str) -> tuple[dict[str, str], list[tuple[str, dict[str, str]]]]:
    """The header's ``key=value`` lines and each ``Tree=N`` block's, up to ``end of trees``."""
    header: dict[str, str] = {}
    blocks: list[tuple[str, dict[str, str]]] = []
    current = header
    for line in text.splitlines():
        if line == "end of trees":
            break
        key, eq, value = line.partition("=")
        if not eq:
            continue
        if key == "Tree":
            current = {}
            blocks.append((f"tree {value}", current))
        else:
            current[key] = value
    return header, blocks


@kernel
def _walk(x, nodes, thresholds, leaf_values, roots, sigmoid):  # type: ignore[no-untyped-def]  # pragma: no cover
    """Per row: the sum of the trees' leaves; ``1 / (1 + exp(-sigmoid * sum))`` when
    ``sigmoid > 0``. LightGBM's decision rules, in the module docstring."""
    n = x.shape[0]
    out = np.empty(n, dtype=np.float64)
    for i in range(n):
        total = 0.0
        for t in range(roots.shape[0]):
            node = roots[t]
            while node >= 0:
                v = float(x[i, nodes[node, FEATURE]])
                if abs(v) <= K_ZERO_THRESHOLD:
                    v = 0.0
                decision = nodes[node, DECISION]
                missing = (decision >> 2) & 3
                if missing != MISSING_NAN and math.isnan(v):
                    v = 0.0
                if (missing == MISSING_ZERO and v == 0.0) or (
                    missing == MISSING_NAN and math.isnan(v)
                ):
                    if decision & DEFAULT_LEFT_MASK:
                        node = nodes[node, LEFT]
                    else:
                        node = nodes[node, RIGHT]
                elif v <= thresholds[node]:
                    node = nodes[node, LEFT]
                else:
                    node = nodes[node, RIGHT]
            total += leaf_values[~node]
        if sigmoid > 0.0:
            total = 1.0 / (1.0 + math.exp(-sigmoid * total))
        out[i] = total
    return out


@kernel
def _bitmask(x, starts, thresholds, trees, masks, leaves, leaf_start, sigmoid):  # type: ignore[no-untyped-def]  # pragma: no cover
    """:func:`_walk`'s numbers by :class:`Bitmasks`: per row, per feature, clear the bits
    of the splits that send the value right; each tree's leaf is its lowest bit left.

    Indices are unsigned (``starts``, ``trees``): numba then skips the wrap-around of
    negative indices on every access, and the clearing loop, apart from the search for
    its end, has no branch: ~1.5x faster than with signed indices in one loop."""
    n, n_features = x.shape
    n_trees = leaf_start.shape[0] - 1
    out = np.empty(n, dtype=np.float64)
    standing = np.empty(n_trees, dtype=np.uint64)
    one = np.uint64(1)
    for i in range(n):
        standing[:] = np.uint64(ALL_ONES)
        for j in range(n_features):
            v = float(x[i, j])
            if abs(v) <= K_ZERO_THRESHOLD:
                v = 0.0
            if math.isnan(v):
                k, end = starts[2, j], starts[2, j + 1]
            elif v == 0.0:
                k, end = starts[1, j], starts[1, j + 1]
            else:
                k, end = starts[0, j], starts[0, j]
                last = starts[0, j + 1]
                while end < last and thresholds[end] < v:
                    end += one
            while k < end:
                standing[trees[k]] &= masks[k]
                k += one
        total = 0.0
        for t in range(n_trees):
            m = standing[t]
            lowest = m & (~m + one)
            total += leaves[leaf_start[t] + LOWEST_BIT[(lowest * np.uint64(DE_BRUIJN)) >> 58]]
        if sigmoid > 0.0:
            total = 1.0 / (1.0 + math.exp(-sigmoid * total))
        out[i] = total
    return out
