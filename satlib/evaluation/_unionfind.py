"""Numba component trees: every threshold's components from one union-find pass per map.

Imported lazily by `satlib.evaluation.components` (numba is slow to import). Thresholds are
nested, so pixels are bucketed by the first threshold at which they switch (a counting sort over
T+1 buckets, not a full sort) and added bucket by bucket: in the descending pass the foreground
``value > cut`` grows as the cut falls, in the ascending pass the background ``value <= cut``
grows as the cut rises. After each bucket, the union-find roots are that threshold's components.

Layout: each map lives in a grid padded by one pixel on every side (``(H+2) x (W+2)``), so a
pixel's eight neighbours are fixed offsets with no bounds checks. A padding pixel is never
foreground; in the background pass it belongs to the outside (the root ``OUTSIDE``), which is how
background reaching the image border is told apart from holes. Neighbours are visited by runs:
the eight neighbours form a ring in which consecutive ones touch, so all active neighbours of one
run are already one component and a single `_find` per run suffices (per group of edge
neighbours joined through a corner, for 4-connectivity). The 2x2-window area gained by a new
pixel is also a function of which neighbours are active, so it comes from a 256-entry table.

Per root, ``node[x]`` holds ``min_row, min_col, max_row, max_col, size, first, weight`` (first:
padded raster index of the first pixel; weight: pixel count or twice the contour area). Cuts are
visited sorted ascending; ``asc_order[i]`` is the original index of the i-th.

The passes take the padded grid (`Grid`) and the reused arrays (`Workspace`) as two records, and
their options by keyword: ``window_area=True``, ``prefer_last=True``, ``largest=None`` (no
largest-component output), ``want_holes=True``.
"""

from typing import NamedTuple

import numpy as np
from numba import njit

from satlib.evaluation.components import COMPONENT, HOLE

# The 8-neighbour ring clockwise from north: N, NE, E, SE, S, SW, W, NW.
RING = ((-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1))
OUTSIDE = 0  # padded index of the top-left padding pixel: the background pass's border root
R0, C0, R1, C1, SIZE, FIRST, WEIGHT = range(7)
NODE = 8  # int32 fields per node (one is spare: 32 bytes)


class Grid(NamedTuple):
    """One map size's padded grid: image row and column of every padded index, the ring offsets."""

    rows: np.ndarray  # ((H+2)*(W+2),) int32, -1 and H on the padding
    cols: np.ndarray
    offsets: np.ndarray  # (8,) int64: padded-index step to each ring neighbour, in `RING` order
    height: int
    width: int


class Workspace(NamedTuple):
    """Arrays of one padded grid (each indexed by padded pixel), reused by every pass over every map."""

    parent: np.ndarray  # union-find parent, -1 = not added yet
    active: np.ndarray  # uint8: added in this pass
    node: np.ndarray  # (n, NODE) per-root fields R0..WEIGHT
    live: np.ndarray  # the current roots, in slots 0..nlive-1
    slot: np.ndarray  # each live root's index in `live`
    below: np.ndarray  # number of cuts below the pixel's value (its bucket)
    join: np.ndarray  # background pass: the step at which the pixel reaches the border
    event_parent: np.ndarray  # background pass: root each pixel or root was joined to ...
    event_step: np.ndarray  # ... at this step,
    events: np.ndarray  # ... in this order


def _ring_runs(mask: int, members: tuple[int, ...], joined) -> list[int]:
    """One ring position per group of set `members`, grouping ring-neighbours that `joined` links."""
    reps, seen = [], set()
    for start in members:
        if not mask >> start & 1 or start in seen:
            continue
        reps.append(start)
        stack = [start]
        while stack:
            k = stack.pop()
            seen.add(k)
            stack += [j for j in members if mask >> j & 1 and j not in seen and joined(mask, k, j)]
    return reps


def _tables() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per 8-bit neighbour mask: foreground run reps (8-conn), background group reps (4-conn), area
    gain, and Euler-number gain of a 4-connected set."""
    fg = np.full((256, 5), -1, dtype=np.int64)  # column 0: count, then ring positions
    bg = np.full((256, 5), -1, dtype=np.int64)
    gain = np.zeros(256, dtype=np.int64)
    euler = np.zeros(256, dtype=np.int64)

    def touches(mask, k, j):  # 8-connectivity: ring-neighbours touch
        return (k - j) % 8 in (1, 7)

    def corner(mask, k, j):  # 4-connectivity: edge neighbours k, j two apart, linked by the corner between
        if (k - j) % 8 not in (2, 6):
            return False
        between = (k + 1) % 8 if (j - k) % 8 == 2 else (j + 1) % 8
        return bool(mask >> between & 1)

    for mask in range(256):
        for table, members, joined in ((fg, range(8), touches), (bg, (0, 2, 4, 6), corner)):
            reps = _ring_runs(mask, tuple(members), joined)
            table[mask, 0] = len(reps)
            table[mask, 1:1 + len(reps)] = reps
        # a 2x2 window gains area when the new pixel makes it 3 or 4: >= 2 of its other pixels set
        for window in ((7, 0, 6), (0, 1, 2), (2, 3, 4), (4, 5, 6)):
            gain[mask] += sum(mask >> k & 1 for k in window) >= 2
            euler[mask] += sum(mask >> k & 1 for k in window) == 3  # a new full 2x2 face
        # 4-connected Euler number V - E + F: one vertex, an edge per edge neighbour, the new faces
        euler[mask] += 1 - sum(mask >> k & 1 for k in (0, 2, 4, 6))
    return fg, bg, gain, euler


FG_RUNS, BG_GROUPS, AREA_GAIN, EULER_GAIN = _tables()


@njit(cache=True, inline="always")
def _find(parent, x):
    while parent[x] != x:  # path halving
        parent[x] = parent[parent[x]]
        x = parent[x]
    return x


@njit(cache=True)
def _bucket_order(key, H, W, T):
    """Counting sort of the image pixels (padded indices) by key 0..T -> order (H*W,), starts (T+2,)."""
    W2 = W + 2
    starts = np.zeros(T + 2, dtype=np.int64)
    for r in range(H):
        for c in range(W):
            starts[key[(r + 1) * W2 + c + 1] + 1] += 1
    for j in range(T + 1):
        starts[j + 1] += starts[j]
    fill = starts[:-1].copy()
    order = np.empty(H * W, dtype=np.int32)
    for r in range(H):
        for c in range(W):
            p = (r + 1) * W2 + c + 1
            order[fill[key[p]]] = p
            fill[key[p]] += 1
    return order, starts


@njit(cache=True)
def _grow(buffer, count):
    if count < buffer.shape[0]:
        return buffer
    bigger = np.empty((2 * buffer.shape[0], buffer.shape[1]), dtype=buffer.dtype)
    bigger[:count] = buffer[:count]
    return bigger


@njit(cache=True, inline="always")
def _neighbour_mask(active, p, W2):
    """Bit k set when ring neighbour k of padded pixel p is active (`active` holds 0 or 1)."""
    i64 = np.int64
    return (i64(active[p - W2]) | i64(active[p - W2 + 1]) << 1 | i64(active[p + 1]) << 2
            | i64(active[p + W2 + 1]) << 3 | i64(active[p + W2]) << 4 | i64(active[p + W2 - 1]) << 5
            | i64(active[p - 1]) << 6 | i64(active[p - W2 - 1]) << 7)


@njit(cache=True)
def _grid(H, W):
    """The `Grid` of an H x W map: image coordinates of every padded index, and the ring offsets."""
    W2 = W + 2
    rows = np.empty((H + 2) * W2, dtype=np.int32)
    cols = np.empty((H + 2) * W2, dtype=np.int32)
    for p in range(rows.shape[0]):
        rows[p], cols[p] = p // W2 - 1, p % W2 - 1
    offsets = np.array([-W2, -W2 + 1, 1, W2 + 1, W2, W2 - 1, -1, -W2 - 1], dtype=np.int64)
    return Grid(rows, cols, offsets, H, W)


@njit(cache=True, inline="always")
def _new_root(node, p, r, c, weight):
    node[p, R0], node[p, C0], node[p, R1], node[p, C1] = r, c, r, c
    node[p, SIZE], node[p, FIRST], node[p, WEIGHT] = 1, p, weight


@njit(cache=True, inline="always")
def _attach(node, root, p, r, c, weight):
    """Pixel p (row r, col c) joins the component rooted at `root`."""
    node[root, R0] = min(node[root, R0], r)
    node[root, C0] = min(node[root, C0], c)
    node[root, R1] = max(node[root, R1], r)
    node[root, C1] = max(node[root, C1], c)
    node[root, SIZE] += 1
    node[root, FIRST] = min(node[root, FIRST], p)
    node[root, WEIGHT] += weight


@njit(cache=True, inline="always")
def _absorb(node, root, other):
    """Fold root `other`'s extent, size, first pixel and weight into `root`."""
    node[root, R0] = min(node[root, R0], node[other, R0])
    node[root, C0] = min(node[root, C0], node[other, C0])
    node[root, R1] = max(node[root, R1], node[other, R1])
    node[root, C1] = max(node[root, C1], node[other, C1])
    node[root, SIZE] += node[other, SIZE]
    node[root, FIRST] = min(node[root, FIRST], node[other, FIRST])
    node[root, WEIGHT] += node[other, WEIGHT]


@njit(cache=True, inline="always")
def _drop_live(live, slot, nlive, x):
    """Swap-remove root x from the live list; returns the new length."""
    i = slot[x]
    last = live[nlive - 1]
    live[i] = last
    slot[last] = i
    return nlive - 1


@njit(cache=True, inline="always")
def _emit(buffer, count, m, t, kind, node, x):
    buffer = _grow(buffer, count)
    buffer[count, 0], buffer[count, 1], buffer[count, 2] = m, t, kind
    buffer[count, 3], buffer[count, 4] = node[x, R0], node[x, C0]
    buffer[count, 5], buffer[count, 6] = node[x, R1], node[x, C1]
    return buffer, count + 1


@njit(cache=True, inline="always")
def _beats(node, a, b, prefer_last):
    """Does component a rank above component b (heavier, then the tie rule on first pixels)?"""
    if node[a, WEIGHT] != node[b, WEIGHT]:
        return node[a, WEIGHT] > node[b, WEIGHT]
    if prefer_last:
        return node[a, FIRST] > node[b, FIRST]
    return node[a, FIRST] < node[b, FIRST]


@njit(cache=True)
def _workspace(H, W):
    """The `Workspace` of an H x W map."""
    n2 = (H + 2) * (W + 2)
    i32 = np.int32
    return Workspace(parent=np.empty(n2, dtype=i32), active=np.zeros(n2, dtype=np.uint8),
                     node=np.zeros((n2, NODE), dtype=i32), live=np.empty(n2, dtype=i32),
                     slot=np.empty(n2, dtype=i32), below=np.zeros(n2, dtype=i32), join=np.empty(n2, dtype=i32),
                     event_parent=np.empty(n2, dtype=i32), event_step=np.empty(n2, dtype=i32),
                     events=np.empty(n2, dtype=i32))


@njit(cache=True)
def _descending(order, starts, grid, work, asc_order, m, buffer, count, emit, largest=None, window_area=False,
                prefer_last=False):
    """Foreground pass (8-connected): the pixels of bucket i+1 join at the i-th smallest cut.

    Writes the largest component's extent per threshold into `largest` (T, 4) (-1 if none) unless
    it is None, and at the sorted steps i where ``emit[i]`` appends (map `m`, threshold,
    `COMPONENT`, extent) rows for every component. Size: pixel count, or with `window_area` twice
    the polygon area (2x2 windows of 3 count 1, of 4 count 2). Ties: first pixel in raster order
    first, or last with `prefer_last`.
    """
    T = asc_order.shape[0]
    W2 = grid.width + 2
    rows, cols, offsets = grid.rows, grid.cols, grid.offsets
    parent, active, node, live, slot = work.parent, work.active, work.node, work.live, work.slot
    parent[:] = -1
    active[:] = 0
    nlive = 0
    best = -1
    for i in range(T - 1, -1, -1):
        changed = starts[i + 2] > starts[i + 1]
        for k in range(starts[i + 1], starts[i + 2]):
            p = order[k]
            r, c = rows[p], cols[p]
            mask = _neighbour_mask(active, p, W2)
            active[p] = 1
            weight = AREA_GAIN[mask] if window_area else 1
            runs = FG_RUNS[mask, 0]
            if runs == 0:
                parent[p] = p
                _new_root(node, p, r, c, weight)
                live[nlive] = p
                slot[p] = nlive
                nlive += 1
                continue
            root = _find(parent, p + offsets[FG_RUNS[mask, 1]])
            parent[p] = root
            _attach(node, root, p, r, c, weight)
            for j in range(2, runs + 1):
                other = _find(parent, p + offsets[FG_RUNS[mask, j]])
                if other == root:
                    continue
                if node[other, SIZE] > node[root, SIZE]:
                    root, other = other, root
                parent[other] = root
                _absorb(node, root, other)
                nlive = _drop_live(live, slot, nlive, other)
        t = asc_order[i]
        if largest is not None:
            if changed or best < 0:
                best = -1
                for j in range(nlive):
                    x = live[j]
                    if best < 0 or _beats(node, x, best, prefer_last):
                        best = x
            if best < 0:
                largest[t, :] = -1
            else:
                largest[t, 0], largest[t, 1] = node[best, R0], node[best, C0]
                largest[t, 2], largest[t, 3] = node[best, R1], node[best, C1]
        if emit[i]:
            for j in range(nlive):
                buffer, count = _emit(buffer, count, m, t, COMPONENT, node, live[j])
    return buffer, count


@njit(cache=True)
def _ascending(order, starts, grid, work, asc_order, m, buffer, count, islands, want_holes=False):
    """Background pass (4-connected): the pixels of bucket i join at the i-th smallest cut.

    Fills ``work.join`` (padded, T where never) with the step at which each pixel is first
    connected to the image border through background: at step i the foreground with its holes
    filled is ``join > i``. With `want_holes`, appends (map `m`, threshold, `HOLE`, extent) rows
    for every hole. ``islands[i]``: some hole at step i encloses foreground (its 4-connected Euler
    number, kept per root in the weight field, is not 1). Returns the rows and whether any step
    has a hole.
    """
    T = asc_order.shape[0]
    H, W = grid.height, grid.width
    W2 = W + 2
    rows, cols, offsets = grid.rows, grid.cols, grid.offsets
    parent, active, node, live, slot = work.parent, work.active, work.node, work.live, work.slot
    event_parent, event_step, events, join = work.event_parent, work.event_step, work.events, work.join
    parent[:] = -1
    active[:] = 0
    for c in range(W2):
        parent[c] = parent[(H + 1) * W2 + c] = OUTSIDE
        active[c] = active[(H + 1) * W2 + c] = 1
    for r in range(1, H + 1):
        parent[r * W2] = parent[r * W2 + W + 1] = OUTSIDE
        active[r * W2] = active[r * W2 + W + 1] = 1
    node[OUTSIDE, SIZE] = 1 << 30  # never absorbed
    nlive = 0
    nevents = 0
    any_hole = False
    for i in range(T):
        for k in range(starts[i], starts[i + 1]):
            p = order[k]
            r, c = rows[p], cols[p]
            mask = _neighbour_mask(active, p, W2)
            active[p] = 1
            euler = EULER_GAIN[mask]
            groups = BG_GROUPS[mask, 0]
            if groups == 0:
                parent[p] = p
                _new_root(node, p, r, c, euler)
                live[nlive] = p
                slot[p] = nlive
                nlive += 1
                continue
            root = _find(parent, p + offsets[BG_GROUPS[mask, 1]])
            parent[p] = root
            event_parent[p], event_step[p] = root, i
            events[nevents] = p
            nevents += 1
            if root != OUTSIDE:
                _attach(node, root, p, r, c, euler)
            for j in range(2, groups + 1):
                other = _find(parent, p + offsets[BG_GROUPS[mask, j]])
                if other == root:
                    continue
                if node[other, SIZE] > node[root, SIZE]:  # the outside always wins
                    root, other = other, root
                parent[other] = root
                event_parent[other], event_step[other] = root, i
                events[nevents] = other
                nevents += 1
                if root != OUTSIDE:
                    _absorb(node, root, other)
                nlive = _drop_live(live, slot, nlive, other)
        any_hole |= nlive > 0
        islands[i] = False
        for j in range(nlive):
            islands[i] |= node[live[j], WEIGHT] != 1
        if want_holes:
            t = asc_order[i]
            for j in range(nlive):
                buffer, count = _emit(buffer, count, m, t, HOLE, node, live[j])
    join[:] = T
    for k in range(nevents - 1, -1, -1):  # a parent's event comes later: resolve top-down
        x = events[k]
        y = event_parent[x]
        join[x] = event_step[x] if y == OUTSIDE else join[y]
    return buffer, count, any_hole


@njit(cache=True)
def _below(values, sorted_cuts, H, W, key):
    """key[padded p] = number of cuts below the pixel's value (cuts < value), float values."""
    W2 = W + 2
    for r in range(H):
        for c in range(W):
            key[(r + 1) * W2 + c + 1] = np.searchsorted(sorted_cuts, values[r * W + c], side="left")


@njit(cache=True)
def _below_levels(levels, sorted_cuts, H, W, key):
    """`_below` for 8-bit levels: one 256-entry lookup table instead of a search per pixel."""
    W2 = W + 2
    table = np.searchsorted(sorted_cuts, np.arange(256).astype(np.float64), side="left").astype(np.int32)
    for r in range(H):
        for c in range(W):
            key[(r + 1) * W2 + c + 1] = table[np.int64(levels[r * W + c])]


@njit(cache=True, nogil=True)
def map_extents(values, cuts, height, width, wsoleval, want_all, levels=False):
    """All maps: largest extents (N, T, 4) and, with `want_all`, rows (M, 7) of every component.

    `values` (N, H*W) with H, W = `height`, `width`: floats compared exactly with the float64
    cuts, or with `levels` 8-bit levels (integers 0..255, looked up in a 256-entry table per
    map). SAT (`wsoleval` False): pixel counts, ties to the first. wsoleval: holes filled, polygon
    areas, ties to the last; the rows also list the holes (kind `HOLE`).

    wsoleval takes two passes per map: the background pass (holes, and when each pixel's hole
    closes), then the foreground pass on the hole-filled map (largest contour; and every contour
    at the steps where no hole encloses foreground, since there filled and unfilled components
    have the same extents). A third pass on the unfilled map lists the contours of the other
    steps, only for maps that have such islands.
    """
    N, T = cuts.shape
    H, W = height, width
    largest = np.empty((N, T, 4), dtype=np.int64)
    buffer = np.empty((1024, 7), dtype=np.int64)
    count = 0
    work = _workspace(H, W)
    grid = _grid(H, W)
    islands = np.zeros(T, dtype=np.bool_)
    for m in range(N):
        asc_order = np.argsort(cuts[m], kind="mergesort")
        sorted_cuts = cuts[m][asc_order]
        if levels:
            _below_levels(values[m], sorted_cuts, H, W, work.below)
        else:
            _below(values[m], sorted_cuts, H, W, work.below)
        order, starts = _bucket_order(work.below, H, W, T)
        emit = np.full(T, want_all)
        if not wsoleval:
            buffer, count = _descending(order, starts, grid, work, asc_order, m, buffer, count, emit=emit,
                                        largest=largest[m])
            continue
        buffer, count, holes = _ascending(order, starts, grid, work, asc_order, m, buffer, count, islands=islands,
                                          want_holes=want_all)
        if not holes:  # no hole at any threshold: join == below
            buffer, count = _descending(order, starts, grid, work, asc_order, m, buffer, count, emit=emit,
                                        largest=largest[m], window_area=True, prefer_last=True)
            continue
        if want_all and islands.any():  # contours inside holes: from the unfilled map at those steps
            buffer, count = _descending(order, starts, grid, work, asc_order, m, buffer, count, emit=islands)
            emit &= ~islands
        filled_order, filled_starts = _bucket_order(work.join, H, W, T)
        buffer, count = _descending(filled_order, filled_starts, grid, work, asc_order, m, buffer, count,
                                    emit=emit, largest=largest[m], window_area=True, prefer_last=True)
    return largest, buffer[:count].copy()
