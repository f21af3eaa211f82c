"""Numba component trees: every threshold's components from one union-find pass per map.

Imported lazily by `satlib.evaluation.components` (numba is slow to import). Pixels are added in
order of decreasing value (foreground `value > cut` grows as the cut falls) or increasing value
(background `value <= cut` grows as the cut rises); at each cut the current union-find roots are
exactly that threshold's components.
"""

import numpy as np
from numba import njit

_ROW_8 = np.array([-1, -1, -1, 0, 0, 1, 1, 1])
_COL_8 = np.array([-1, 0, 1, -1, 1, -1, 0, 1])
_ROW_4 = np.array([-1, 0, 0, 1])
_COL_4 = np.array([0, -1, 1, 0])


@njit(cache=True)
def _find(parent, x):
    root = x
    while parent[root] != root:
        root = parent[root]
    while parent[x] != root:  # path compression
        parent[x], x = root, parent[x]
    return root


@njit(cache=True)
def _drop_live(live, slot, nlive, x):
    """Swap-remove root x from the live list; returns the new length."""
    i = slot[x]
    last = live[nlive - 1]
    live[i] = last
    slot[last] = i
    slot[x] = -1
    return nlive - 1


@njit(cache=True)
def _beats(weight, first, a, b, prefer_last):
    """Does component a rank above component b (bigger, then the tie rule on first pixels)?"""
    if weight[a] != weight[b]:
        return weight[a] > weight[b]
    if prefer_last:
        return first[a] > first[b]
    return first[a] < first[b]


@njit(cache=True)
def _fill_levels(values, H, W):
    """Grayscale hole filling: per pixel, the lowest level at which it joins the border.

    A pixel is background-connected to the image border (4-connectivity, through pixels
    <= cut) iff level <= cut, so `level > cut` is the foreground with its holes filled.
    """
    n = H * W
    out = n
    order = np.argsort(values, kind="mergesort")
    parent = np.arange(n + 1)
    active = np.zeros(n, dtype=np.bool_)
    tree_parent = np.full(n + 1, -1, dtype=np.int64)
    joined_at = np.zeros(n + 1)
    absorbed = np.empty(n, dtype=np.int64)
    count = 0
    for k in range(n):
        p = order[k]
        v = values[p]
        active[p] = True
        r, c = p // W, p % W
        for j in range(4):
            rr, cc = r + _ROW_4[j], c + _COL_4[j]
            if rr < 0 or rr >= H or cc < 0 or cc >= W:
                continue
            q = rr * W + cc
            if not active[q]:
                continue
            a, b = _find(parent, p), _find(parent, q)
            if a == b:
                continue
            if b == out or (a != out and b < a):
                a, b = b, a
            parent[b] = a  # b joins a (the border node always stays a root)
            tree_parent[b] = a
            joined_at[b] = v
            absorbed[count] = b
            count += 1
        if r == 0 or r == H - 1 or c == 0 or c == W - 1:
            a = _find(parent, p)
            if a != out:
                parent[a] = out
                tree_parent[a] = out
                joined_at[a] = v
                absorbed[count] = a
                count += 1
    level = np.empty(n + 1)
    for k in range(count - 1, -1, -1):  # parents were absorbed later: resolve top-down
        x = absorbed[k]
        level[x] = joined_at[x] if tree_parent[x] == out else level[tree_parent[x]]
    return level[:n]


@njit(cache=True)
def _largest_one(values, cuts, H, W, window_area, prefer_last, out):
    """Largest 8-connected component above each cut of one map, written to out (T, 4)."""
    n = H * W
    T = cuts.shape[0]
    order = np.argsort(-values, kind="mergesort")
    cut_order = np.argsort(-cuts, kind="mergesort")
    parent = np.arange(n)
    size = np.ones(n, dtype=np.int64)
    weight = np.zeros(n, dtype=np.int64)
    first = np.arange(n)
    ext = np.empty((n, 4), dtype=np.int64)
    active = np.zeros(n, dtype=np.bool_)
    windows = np.zeros(max(H - 1, 0) * max(W - 1, 0), dtype=np.int8)
    live = np.empty(n, dtype=np.int64)
    slot = np.full(n, -1, dtype=np.int64)
    nlive = 0
    best = -1
    old_best_weight, old_best_first = 0, 0
    k = 0
    for j in range(T):
        cut = cuts[cut_order[j]]
        while k < n and values[order[k]] > cut:
            p = order[k]
            k += 1
            r, c = p // W, p % W
            active[p] = True
            weight[p] = 0 if window_area else 1
            ext[p, 0], ext[p, 1], ext[p, 2], ext[p, 3] = r, c, r, c
            live[nlive] = p
            slot[p] = nlive
            nlive += 1
            if best >= 0:
                old_best_weight, old_best_first = weight[best], first[best]
            root = p
            for i in range(8):
                rr, cc = r + _ROW_8[i], c + _COL_8[i]
                if rr < 0 or rr >= H or cc < 0 or cc >= W or not active[rr * W + cc]:
                    continue
                other = _find(parent, rr * W + cc)
                if other == root:
                    continue
                if size[other] > size[root]:
                    root, other = other, root
                parent[other] = root  # other joins root
                size[root] += size[other]
                weight[root] += weight[other]
                first[root] = min(first[root], first[other])
                ext[root, 0] = min(ext[root, 0], ext[other, 0])
                ext[root, 1] = min(ext[root, 1], ext[other, 1])
                ext[root, 2] = max(ext[root, 2], ext[other, 2])
                ext[root, 3] = max(ext[root, 3], ext[other, 3])
                nlive = _drop_live(live, slot, nlive, other)
            if window_area:
                for wr in range(r - 1, r + 1):
                    for wc in range(c - 1, c + 1):
                        if 0 <= wr < H - 1 and 0 <= wc < W - 1:
                            w = wr * (W - 1) + wc
                            windows[w] += 1
                            if windows[w] >= 3:
                                weight[root] += 1
            if best < 0:
                best = root
            elif _find(parent, best) == root:  # the leader grew or was absorbed
                weight_now, first_now = weight[root], first[root]
                stays = weight_now > old_best_weight or (weight_now == old_best_weight and (
                    first_now >= old_best_first if prefer_last else first_now <= old_best_first))
                best = root
                if not stays:  # ranked lower than before (tie rule): rescan the live roots
                    for i in range(nlive):
                        if _beats(weight, first, live[i], best, prefer_last):
                            best = live[i]
            elif _beats(weight, first, root, best, prefer_last):
                best = root
        t = cut_order[j]
        if best < 0:
            out[t, :] = -1
        else:
            out[t, :] = ext[best, :]


@njit(cache=True)
def largest_extents(values, cuts, H, W, fill_holes, window_area, prefer_last):
    N, T = cuts.shape
    out = np.empty((N, T, 4), dtype=np.int64)
    for m in range(N):
        levels = _fill_levels(values[m], H, W) if fill_holes else values[m]
        _largest_one(levels, cuts[m], H, W, window_area, prefer_last, out[m])
    return out


@njit(cache=True)
def _grow(buffer, count):
    if count < buffer.shape[0]:
        return buffer
    bigger = np.empty((2 * buffer.shape[0], buffer.shape[1]), dtype=buffer.dtype)
    bigger[:count] = buffer[:count]
    return bigger


@njit(cache=True)
def _all_one(values, cuts, H, W, holes, m, buffer, count):
    """Append every component (kind 0) and, with `holes`, every hole (kind 1) of one map."""
    n = H * W
    T = cuts.shape[0]
    for kind in range(2 if holes else 1):
        descending = kind == 0
        order = np.argsort(-values if descending else values, kind="mergesort")
        cut_order = np.argsort(-cuts if descending else cuts, kind="mergesort")
        out = n  # border node of the background pass
        parent = np.arange(n + 1)
        size = np.ones(n + 1, dtype=np.int64)
        ext = np.empty((n, 4), dtype=np.int64)
        active = np.zeros(n, dtype=np.bool_)
        live = np.empty(n, dtype=np.int64)
        slot = np.full(n, -1, dtype=np.int64)
        nlive = 0
        k = 0
        for j in range(T):
            cut = cuts[cut_order[j]]
            while k < n and ((values[order[k]] > cut) if descending else (values[order[k]] <= cut)):
                p = order[k]
                k += 1
                r, c = p // W, p % W
                active[p] = True
                ext[p, 0], ext[p, 1], ext[p, 2], ext[p, 3] = r, c, r, c
                live[nlive] = p
                slot[p] = nlive
                nlive += 1
                root = p
                for i in range(8 if descending else 4):
                    rr = r + (_ROW_8[i] if descending else _ROW_4[i])
                    cc = c + (_COL_8[i] if descending else _COL_4[i])
                    if rr < 0 or rr >= H or cc < 0 or cc >= W or not active[rr * W + cc]:
                        continue
                    other = _find(parent, rr * W + cc)
                    if other == root:
                        continue
                    if other == out or (root != out and size[other] > size[root]):
                        root, other = other, root
                    parent[other] = root
                    size[root] += size[other]
                    if root != out:
                        ext[root, 0] = min(ext[root, 0], ext[other, 0])
                        ext[root, 1] = min(ext[root, 1], ext[other, 1])
                        ext[root, 2] = max(ext[root, 2], ext[other, 2])
                        ext[root, 3] = max(ext[root, 3], ext[other, 3])
                    nlive = _drop_live(live, slot, nlive, other)
                if not descending and root != out and (r == 0 or r == H - 1 or c == 0 or c == W - 1):
                    parent[root] = out  # reaches the border: not a hole
                    nlive = _drop_live(live, slot, nlive, root)
            t = cut_order[j]
            for i in range(nlive):
                x = live[i]
                buffer = _grow(buffer, count)
                buffer[count, 0], buffer[count, 1], buffer[count, 2] = m, t, kind
                buffer[count, 3:] = ext[x, :]
                count += 1
    return buffer, count


@njit(cache=True)
def all_extents(values, cuts, H, W, holes):
    N, T = cuts.shape
    buffer = np.empty((1024, 7), dtype=np.int64)
    count = 0
    for m in range(N):
        buffer, count = _all_one(values[m], cuts[m], H, W, holes, m, buffer, count)
    return buffer[:count].copy()
