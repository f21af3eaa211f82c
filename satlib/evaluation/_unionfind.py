"""Numba component trees: every threshold's components from one union-find pass per map.

Imported lazily by `satlib.evaluation.components` (numba is slow to import). Thresholds are
nested, so pixels are bucketed by the first threshold at which they switch (a counting sort over
T+1 buckets, not a full sort) and added bucket by bucket: in the descending pass the foreground
``value > cut`` grows as the cut falls, in the ascending pass the background ``value <= cut``
grows as the cut rises. After each bucket, the union-find roots are that threshold's components.

Checkpoints are the cuts sorted ascending; ``asc_order[i]`` is the original index of the i-th.
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
def _bucket_order(entry, T):
    """Counting sort of pixels by entry step (0..T; T = never) -> order, starts (T+2,)."""
    n = entry.shape[0]
    starts = np.zeros(T + 2, dtype=np.int64)
    for p in range(n):
        starts[entry[p] + 1] += 1
    for j in range(T + 1):
        starts[j + 1] += starts[j]
    fill = starts[:-1].copy()
    order = np.empty(n, dtype=np.int64)
    for p in range(n):
        order[fill[entry[p]]] = p
        fill[entry[p]] += 1
    return order, starts


@njit(cache=True)
def _grow(buffer, count):
    if count < buffer.shape[0]:
        return buffer
    bigger = np.empty((2 * buffer.shape[0], buffer.shape[1]), dtype=buffer.dtype)
    bigger[:count] = buffer[:count]
    return bigger


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
def _descending(entry, H, W, T, window_area, prefer_last, want_all, m, asc_order, largest, buffer, count):
    """Add pixels by entry step (step j = the j-th largest cut); 8-connected foreground.

    Writes the largest component's extent per threshold into `largest` (T, 4) (-1 if none) and,
    with `want_all`, appends (map, threshold, 0, extent) rows for every component to `buffer`.
    Size: pixel count, or with `window_area` twice the polygon area (2x2 windows of 3 count 1,
    of 4 count 2). Ties: first pixel in raster order first, or last with `prefer_last`.
    """
    n = H * W
    order, starts = _bucket_order(entry, T)
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
    old_weight, old_first = 0, 0
    for j in range(T):
        for k in range(starts[j], starts[j + 1]):
            p = order[k]
            r, c = p // W, p % W
            active[p] = True
            weight[p] = 0 if window_area else 1
            ext[p, 0], ext[p, 1], ext[p, 2], ext[p, 3] = r, c, r, c
            live[nlive] = p
            slot[p] = nlive
            nlive += 1
            if best >= 0:
                old_weight, old_first = weight[best], first[best]
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
                now_weight, now_first = weight[root], first[root]
                stays = now_weight > old_weight or (now_weight == old_weight and (
                    now_first >= old_first if prefer_last else now_first <= old_first))
                best = root
                if not stays:  # ranked lower than before (tie rule): rescan the live roots
                    for i in range(nlive):
                        if _beats(weight, first, live[i], best, prefer_last):
                            best = live[i]
            elif _beats(weight, first, root, best, prefer_last):
                best = root
        t = asc_order[T - 1 - j]
        if best < 0:
            largest[t, :] = -1
        else:
            largest[t, :] = ext[best, :]
        if want_all:
            for i in range(nlive):
                buffer = _grow(buffer, count)
                buffer[count, 0], buffer[count, 1], buffer[count, 2] = m, t, 0
                buffer[count, 3:] = ext[live[i], :]
                count += 1
    return buffer, count


@njit(cache=True)
def _ascending(entry, H, W, T, want_holes, m, asc_order, buffer, count):
    """Add pixels by entry step (step i = the i-th smallest cut); 4-connected background.

    Returns, per pixel, the step at which it is first connected to the image border through
    background (T if never): at step i the foreground with its holes filled is `join > i`.
    With `want_holes`, appends (map, threshold, 1, extent) rows for every hole.
    """
    n = H * W
    out = n  # the border node: always a root
    order, starts = _bucket_order(entry, T)
    parent = np.arange(n + 1)
    size = np.ones(n + 1, dtype=np.int64)
    ext = np.empty((n, 4), dtype=np.int64)
    active = np.zeros(n, dtype=np.bool_)
    live = np.empty(n, dtype=np.int64)
    slot = np.full(n, -1, dtype=np.int64)
    nlive = 0
    tree_parent = np.full(n + 1, -1, dtype=np.int64)
    joined_at = np.zeros(n + 1, dtype=np.int64)
    absorbed = np.empty(n, dtype=np.int64)
    nabsorbed = 0
    for i in range(T):
        for k in range(starts[i], starts[i + 1]):
            p = order[k]
            r, c = p // W, p % W
            active[p] = True
            ext[p, 0], ext[p, 1], ext[p, 2], ext[p, 3] = r, c, r, c
            live[nlive] = p
            slot[p] = nlive
            nlive += 1
            root = p
            border = r == 0 or r == H - 1 or c == 0 or c == W - 1
            for j in range(5):
                if j < 4:
                    rr, cc = r + _ROW_4[j], c + _COL_4[j]
                    if rr < 0 or rr >= H or cc < 0 or cc >= W or not active[rr * W + cc]:
                        continue
                    other = _find(parent, rr * W + cc)
                elif border:
                    other = out
                else:
                    continue
                if other == root:
                    continue
                if other == out or (root != out and size[other] > size[root]):
                    root, other = other, root
                parent[other] = root  # other joins root
                size[root] += size[other]
                tree_parent[other] = root
                joined_at[other] = i
                absorbed[nabsorbed] = other
                nabsorbed += 1
                if root != out:
                    ext[root, 0] = min(ext[root, 0], ext[other, 0])
                    ext[root, 1] = min(ext[root, 1], ext[other, 1])
                    ext[root, 2] = max(ext[root, 2], ext[other, 2])
                    ext[root, 3] = max(ext[root, 3], ext[other, 3])
                nlive = _drop_live(live, slot, nlive, other)
        if want_holes:
            t = asc_order[i]
            for j in range(nlive):
                buffer = _grow(buffer, count)
                buffer[count, 0], buffer[count, 1], buffer[count, 2] = m, t, 1
                buffer[count, 3:] = ext[live[j], :]
                count += 1
    join = np.full(n + 1, T, dtype=np.int64)
    for k in range(nabsorbed - 1, -1, -1):  # parents were absorbed later: resolve top-down
        x = absorbed[k]
        join[x] = joined_at[x] if tree_parent[x] == out else join[tree_parent[x]]
    return join[:n], buffer, count


@njit(cache=True, nogil=True)
def map_boxes(values, cuts, H, W, wsoleval, want_all):
    """All maps: largest extents (N, T, 4) and, with `want_all`, rows (M, 7) of every component.

    SAT (`wsoleval` False): pixel counts, ties to the first. wsoleval: holes filled, polygon
    areas, ties to the last; the rows also list the holes (kind 1).
    """
    N, T = cuts.shape
    n = H * W
    largest = np.empty((N, T, 4), dtype=np.int64)
    buffer = np.empty((1024, 7), dtype=np.int64)
    count = 0
    for m in range(N):
        asc_order = np.argsort(cuts[m], kind="mergesort")
        below = np.searchsorted(cuts[m][asc_order], values[m], side="left")  # cuts < value
        if wsoleval:
            before = count
            join, buffer, count = _ascending(below, H, W, T, True, m, asc_order, buffer, count)
            holes = count > before
            if not want_all:
                count = before
            if holes:  # fill the holes: the largest contour is found on the filled maps
                scratch = np.empty((T, 4), dtype=np.int64)
                if want_all:
                    buffer, count = _descending(T - below, H, W, T, False, False, True, m, asc_order,
                                                scratch, buffer, count)
                buffer, count = _descending(T - join, H, W, T, True, True, False, m, asc_order,
                                            largest[m], buffer, count)
            else:  # no hole at any threshold: one pass gives the largest contour and every contour
                buffer, count = _descending(T - below, H, W, T, True, True, want_all, m, asc_order,
                                            largest[m], buffer, count)
        else:
            buffer, count = _descending(T - below, H, W, T, False, False, want_all, m, asc_order,
                                        largest[m], buffer, count)
    return largest, buffer[:count].copy()
