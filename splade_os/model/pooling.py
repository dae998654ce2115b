"""SPLADE pooling as plain numpy: the maths that the exported ONNX graph must reproduce.

For token logits `z[b, t, v]` and attention mask `m[b, t]`, SPLADE gives

    w[b, v] = max_t  m[b, t] * log(1 + relu(z[b, t, v]))

`log1p` and `relu` are monotone and map 0 to 0, so the same weights come from taking the masked max of the raw
logits first and applying `log(1 + relu(.))` to the `[batch, vocab]` result. Padding is set to 0 rather than
-inf: a real token never has a weight below 0 after `relu`, so 0 is exact and never lets padding win.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def _check(logits: npt.ArrayLike, attention_mask: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    z = np.asarray(logits, dtype=np.float32)
    m = np.asarray(attention_mask)
    if z.ndim != 3:
        raise ValueError(f"logits must be [batch, tokens, vocab], got shape {z.shape}")
    if m.shape != z.shape[:2]:
        raise ValueError(f"attention_mask must be [batch, tokens] = {z.shape[:2]}, got shape {m.shape}")
    return z, m.astype(bool)


def splade_pool(logits: npt.ArrayLike, attention_mask: npt.ArrayLike) -> np.ndarray:
    """SPLADE max pooling of `[batch, tokens, vocab]` logits into `[batch, vocab]` float32 weights."""
    z, m = _check(logits, attention_mask)
    activated = np.log1p(np.maximum(z, 0.0)) * m[:, :, None]
    if z.shape[1] == 0:
        return np.zeros((z.shape[0], z.shape[2]), dtype=np.float32)
    return activated.max(axis=1).astype(np.float32)


def splade_pool_max_first(
    logits: npt.ArrayLike, attention_mask: npt.ArrayLike, *, overwrite: bool = False
) -> np.ndarray:
    """The same weights as `splade_pool`, computed in the order the ONNX graph uses: masked max, then log1p(relu).

    `overwrite=True` lets a float32 `logits` array serve as the scratch space: a `[batch, tokens, vocab]` block
    is the largest thing an encoder holds, and a fresh copy of it costs as much memory traffic as the pooling.
    """
    z, m = _check(logits, attention_mask)
    if z.shape[1] == 0:
        return np.zeros((z.shape[0], z.shape[2]), dtype=np.float32)
    scratch = z if overwrite and z.flags.writeable else z.copy()
    np.maximum(scratch, 0.0, out=scratch)
    scratch[~m] = 0.0
    return np.log1p(scratch.max(axis=1)).astype(np.float32)


Sparse = tuple[np.ndarray, np.ndarray]  # token ids in ascending order, their float32 weights


def merge_sparse(a: Sparse, b: Sparse) -> Sparse:
    """The element-wise max of two sparse rows (the windows of one long text), token ids ascending."""
    ids = np.concatenate([a[0], b[0]])
    values = np.concatenate([a[1], b[1]])
    order = np.lexsort((-values, ids))  # by id, heaviest first within an id
    ids, values = ids[order], values[order]
    first = np.ones(len(ids), dtype=bool)
    first[1:] = ids[1:] != ids[:-1]
    return ids[first], values[first]
