"""Numba component trees: every threshold's components from one union-find pass per map.

Imported lazily by `satlib.evaluation.components` (numba is slow to import). Thresholds are
nested, so pixels are bucketed by the number of cuts below their value (their key: a counting
sort over T+1 buckets, not a full sort) and added bucket by bucket in the foreground pass
(`_descending`): the foreground ``value > cut`` grows as the cut falls, and after each bucket the
union-find roots are that threshold's components.

Layout: each map lives in a grid padded by one pixel on every side (``(H+2) x (W+2)``), so a
pixel's eight neighbours are fixed offsets with no bounds checks; the padding is never
foreground. Neighbours are visited by runs: the eight neighbours form a ring in which
consecutive ones touch, so all earlier neighbours of one run are already one component and a
single `_find` per run suffices. Which neighbours came earlier is one 8-bit mask per pixel, made
from the keys in a vectorised pass (`_earlier_mask`); the runs to join and the 2x2-window area a
pixel adds are 256-entry lookups of it. Smooth upsampled maps put a bucket's pixels in long row
runs: a pixel that continues its west neighbour's run with no other earlier neighbour joins that
component without a `_find`, and the run's length, area and last column are folded in once.

wsoleval fills holes (background not 4-connected to the border) before measuring contours.
The hole-filled map needs no background union-find: its keys are the step at which each pixel
first reaches the border through background (`_filled_levels`, a grayscale reconstruction: two
raster scans and a short queue). The holes themselves (for hole-contour boxes, and to know where
foreground lies inside a hole) come from a 4-connected union-find over the few lake pixels, the
pixels inside a hole at their own step (`_holes`).

Per root, ``node[x]`` holds ``min_row, min_col, max_row, max_col, size, first, weight`` (first:
padded raster index of the first pixel; weight: pixel count, twice the contour area, or a hole's
4-connected Euler number). Cuts are visited sorted ascending; ``asc_order[i]`` is the original
index of the i-th.

The passes take the padded grid (`Grid`) and the reused arrays (`Workspace`) as two records, and
their options by keyword (``window_area=True``, ``prefer_last=True``, ``want_holes=True``), always
all of them, so that numba compiles each pass once (first use costs tens of seconds of
compilation; later processes load it from numba's cache).
"""

from typing import NamedTuple

import numpy as np
from numba import njit

from satlib.evaluation.checks import COMPONENT, HOLE

# The 8-neighbour ring clockwise from north: N, NE, E, SE, S, SW, W, NW.
RING = ((-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1))
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
    active: np.ndarray  # uint8: added in the holes pass (a queued flag in `_filled_levels`)
    earlier: np.ndarray  # uint8: `_earlier_mask` of the keys the foreground pass runs on
    node: np.ndarray  # (n, NODE) per-root fields R0..WEIGHT
    live: np.ndarray  # the current roots, in slots 0..nlive-1
    slot: np.ndarray  # each live root's index in `live`
    below: np.ndarray  # number of cuts below the pixel's value (its bucket)
    join: np.ndarray  # the hole-filled map's key: the step at which the pixel reaches the border
    queue: np.ndarray  # `_filled_levels`' FIFO
    lakes: np.ndarray  # lake pixels (inside a hole at their own step), by key, then by join


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


@njit(cache=True)
def _find(parent, x):
    while parent[x] != x:  # path halving
        parent[x] = parent[parent[x]]
        x = parent[x]
    return x


@njit(cache=True)
def _key_counts(key, H, W, T):
    """How many image pixels have each key 0..T, at index key + 1 of a (T+2,) array."""
    W2 = W + 2
    counts = np.zeros(T + 2, dtype=np.int64)
    for r in range(1, H + 1):
        for p in range(r * W2 + 1, r * W2 + W + 1):
            counts[key[p] + 1] += 1
    return counts


@njit(cache=True)
def _bucket_order(key, H, W, counts):
    """Counting sort of the image pixels (padded indices) by key, given `_key_counts` -> order
    (H*W,) (raster order within a key) and starts (T+2,): key k holds ``order[starts[k]:starts[k+1]]``."""
    W2 = W + 2
    starts = np.cumsum(counts)
    fill = starts[:-1].copy()
    order = np.empty(H * W, dtype=np.int32)
    for r in range(1, H + 1):
        for p in range(r * W2 + 1, r * W2 + W + 1):
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


@njit(cache=True)
def _neighbour_mask(active, p, W2):
    """Bit k set when ring neighbour k of padded pixel p is active (`active` holds 0 or 1)."""
    i64 = np.int64
    return (i64(active[p - W2]) | i64(active[p - W2 + 1]) << 1 | i64(active[p + 1]) << 2
            | i64(active[p + W2 + 1]) << 3 | i64(active[p + W2]) << 4 | i64(active[p + W2 - 1]) << 5
            | i64(active[p - 1]) << 6 | i64(active[p - W2 - 1]) << 7)


@njit(cache=True)
def _earlier_mask(key, H, W, mask):
    """``mask[p]``, bit k set when ring neighbour k of padded pixel p joins the descending pass
    before p: a larger key, or the same key and earlier in raster order (N, NE, W, NW). The
    padding's key 0 is below every pixel the pass adds (keys >= 1). One vectorised pass per row.
    """
    W2 = W + 2
    one = np.uint8(1)
    for r in range(1, H + 1):
        b = r * W2
        k = key[b + 1:b + W + 1]
        n, ne, e = key[b - W2 + 1:b - W2 + W + 1], key[b - W2 + 2:b - W2 + W + 2], key[b + 2:b + W + 2]
        se, s, sw = key[b + W2 + 2:b + W2 + W + 2], key[b + W2 + 1:b + W2 + W + 1], key[b + W2:b + W2 + W]
        w, nw = key[b:b + W], key[b - W2:b - W2 + W]
        out = mask[b + 1:b + W + 1]
        for c in range(W):
            x = k[c]
            out[c] = (np.uint8(n[c] >= x) | np.uint8(ne[c] >= x) << one | np.uint8(e[c] > x) << 2
                      | np.uint8(se[c] > x) << 3 | np.uint8(s[c] > x) << 4 | np.uint8(sw[c] > x) << 5
                      | np.uint8(w[c] >= x) << 6 | np.uint8(nw[c] >= x) << 7)


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


@njit(cache=True)
def _new_root(node, p, r, c, weight):
    node[p, R0], node[p, C0], node[p, R1], node[p, C1] = r, c, r, c
    node[p, SIZE], node[p, FIRST], node[p, WEIGHT] = 1, p, weight


@njit(cache=True)
def _attach(node, root, p, r, c, weight):
    """Pixel p (row r, col c) joins the component rooted at `root`."""
    node[root, R0] = min(node[root, R0], r)
    node[root, C0] = min(node[root, C0], c)
    node[root, R1] = max(node[root, R1], r)
    node[root, C1] = max(node[root, C1], c)
    node[root, SIZE] += 1
    node[root, FIRST] = min(node[root, FIRST], p)
    node[root, WEIGHT] += weight


@njit(cache=True)
def _absorb(node, root, other):
    """Fold root `other`'s extent, size, first pixel and weight into `root`."""
    node[root, R0] = min(node[root, R0], node[other, R0])
    node[root, C0] = min(node[root, C0], node[other, C0])
    node[root, R1] = max(node[root, R1], node[other, R1])
    node[root, C1] = max(node[root, C1], node[other, C1])
    node[root, SIZE] += node[other, SIZE]
    node[root, FIRST] = min(node[root, FIRST], node[other, FIRST])
    node[root, WEIGHT] += node[other, WEIGHT]


@njit(cache=True)
def _drop_live(live, slot, nlive, x):
    """Swap-remove root x from the live list; returns the new length."""
    i = slot[x]
    last = live[nlive - 1]
    live[i] = last
    slot[last] = i
    return nlive - 1


@njit(cache=True)
def _emit(buffer, count, m, t, kind, node, x):
    buffer = _grow(buffer, count)
    buffer[count, 0], buffer[count, 1], buffer[count, 2] = m, t, kind
    buffer[count, 3], buffer[count, 4] = node[x, R0], node[x, C0]
    buffer[count, 5], buffer[count, 6] = node[x, R1], node[x, C1]
    return buffer, count + 1


@njit(cache=True)
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
                     earlier=np.zeros(n2, dtype=np.uint8),
                     node=np.zeros((n2, NODE), dtype=i32), live=np.empty(n2, dtype=i32),
                     slot=np.empty(n2, dtype=i32), below=np.zeros(n2, dtype=i32), join=np.empty(n2, dtype=i32),
                     queue=np.empty(n2, dtype=i32), lakes=np.empty(n2, dtype=i32))


@njit(cache=True)
def _close_run(node, root, last_col, length, weight):
    """Fold the pixels that continued a row run (same row, right of a pixel already in `root`)."""
    node[root, C1] = max(node[root, C1], last_col)
    node[root, SIZE] += length
    node[root, WEIGHT] += weight


@njit(cache=True)
def _descending(order, starts, grid, work, asc_order, m, buffer, count, emit, largest, window_area, prefer_last):
    """Foreground pass (8-connected): the pixels of bucket i+1 join at the i-th smallest cut.

    `order`, `starts` from `_bucket_order` and ``work.earlier`` from `_earlier_mask` of the same
    keys (pixels of a bucket in raster order). Writes the largest component's extent per threshold
    into `largest` (T, 4) (-1 if none), and at the sorted steps i where
    ``emit[i]`` appends (map `m`, threshold, `COMPONENT`, extent) rows for every component. Size:
    pixel count, or with `window_area` twice the polygon area (2x2 windows of 3 count 1, of 4
    count 2). Ties: first pixel in raster order first, or last with `prefer_last`.

    A pixel right after its west neighbour in the same bucket whose earlier neighbours form one
    run is in the west neighbour's component: no `_find`, and its row, first pixel and min column
    are already the component's, so only the run's length, weight and last column are folded in
    when the run ends.
    """
    T = asc_order.shape[0]
    rows, cols, offsets = grid.rows, grid.cols, grid.offsets
    parent, earlier, node, live, slot = work.parent, work.earlier, work.node, work.live, work.slot
    nlive = 0
    best = -1
    for i in range(T - 1, -1, -1):
        changed = starts[i + 2] > starts[i + 1]
        previous, root, run_length, run_weight = -2, -1, 0, 0
        for k in range(starts[i + 1], starts[i + 2]):
            p = order[k]
            mask = earlier[p]
            weight = AREA_GAIN[mask] if window_area else 1
            runs = FG_RUNS[mask, 0]
            if p == previous + 1 and runs == 1:  # continues the row run of `root`
                parent[p] = root
                run_length += 1
                run_weight += weight
                previous = p
                continue
            if run_length:
                _close_run(node, root, cols[previous], run_length, run_weight)
                run_length = run_weight = 0
            previous = p
            r, c = rows[p], cols[p]
            if runs == 0:
                parent[p] = root = p
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
        if run_length:
            _close_run(node, root, cols[previous], run_length, run_weight)
        t = asc_order[i]
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
def _filled_levels(below, join, counts, lakes, queue, queued, H, W):
    """The hole-filled map's keys: ``join[p]`` = the least step at which pixel p is background
    (``below[p] <= step``) and 4-connected to the image border through background, i.e. the
    smallest over 4-paths from p out of the image of the largest key on the path.

    A reconstruction by erosion in the manner of Vincent (1993): a raster and an anti-raster scan
    (the padding holds 0: the border is reached at every step) leave ``join >= below`` exact
    except on a few pixels, the candidates (``join > below``); then a FIFO over the candidates
    lowers each to ``max(below, min of its 4 neighbours)`` and requeues the neighbours it may lower,
    until nothing changes. Also fills `counts` (`_key_counts` of `join`) and lists in `lakes` the
    candidates, a superset of the lake pixels (``join > below``: inside a hole at their own
    step); returns how many.
    """
    W2 = W + 2
    n2 = (H + 2) * W2
    join[:] = 0
    for r in range(1, H + 1):  # raster scan: north and west (final in this scan, or padding)
        west = 0
        for p in range(r * W2 + 1, r * W2 + W + 1):
            west = max(min(join[p - W2], west), below[p])
            join[p] = west
    candidates = 0
    for r in range(H, 0, -1):  # anti-raster scan: south and east
        east = 0
        for p in range(r * W2 + W, r * W2, -1):
            key = below[p]
            east = max(min(join[p], join[p + W2], east), key)
            join[p] = east
            counts[east + 1] += 1
            if east > key:
                lakes[candidates] = p
                candidates += 1
    queued[:] = 0
    queue[:candidates] = lakes[:candidates]
    queued[lakes[:candidates]] = 1
    head, tail = 0, candidates % n2
    pending = candidates
    while pending:  # each pixel queued at most once at a time
        p = queue[head]
        head = head + 1 if head + 1 < n2 else 0
        pending -= 1
        queued[p] = 0
        level = max(min(join[p - W2], join[p - 1], join[p + 1], join[p + W2]), below[p])
        if level >= join[p]:
            continue
        counts[join[p] + 1] -= 1
        counts[level + 1] += 1
        join[p] = level
        for q in (p - W2, p - 1, p + 1, p + W2):
            if join[q] > level and join[q] > below[q] and not queued[q]:
                queue[tail] = q
                tail = tail + 1 if tail + 1 < n2 else 0
                pending += 1
                queued[q] = 1
    return candidates


@njit(cache=True)
def _holes(below, join, candidates, grid, work, asc_order, m, buffer, count, islands, want_holes=False):
    """Background pass over the lake pixels only (4-connected): at step i the holes are the
    components of the lake pixels with ``below <= i < join``; a hole drains (reaches the border) at
    its pixels' common `join` step.

    The first `candidates` entries of ``work.lakes`` hold every lake pixel (`_filled_levels`).
    With `want_holes`, appends (map `m`, threshold, `HOLE`, extent) rows for every hole at every
    step. ``islands[i]``: some hole at step i encloses foreground (its 4-connected Euler number,
    kept per root in the weight field, is not 1). Returns the rows.
    """
    T = asc_order.shape[0]
    W2 = grid.width + 2
    rows, cols, offsets = grid.rows, grid.cols, grid.offsets
    parent, active, node, live, slot, lakes = work.parent, work.active, work.node, work.live, work.slot, work.lakes
    order = work.queue  # free after `_filled_levels`
    starts = np.zeros(T + 2, dtype=np.int64)  # counting sort of the lake pixels by their key
    for k in range(candidates):
        p = lakes[k]
        if join[p] > below[p]:
            starts[below[p] + 1] += 1
    for j in range(T + 1):
        starts[j + 1] += starts[j]
    fill = starts[:-1].copy()
    for k in range(candidates):
        p = lakes[k]
        if join[p] > below[p]:
            order[fill[below[p]]] = p
            fill[below[p]] += 1
    active[:] = 0
    nlive = 0
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
            _attach(node, root, p, r, c, euler)
            for j in range(2, groups + 1):
                other = _find(parent, p + offsets[BG_GROUPS[mask, j]])
                if other == root:
                    continue
                if node[other, SIZE] > node[root, SIZE]:
                    root, other = other, root
                parent[other] = root
                _absorb(node, root, other)
                nlive = _drop_live(live, slot, nlive, other)
        j = 0
        while j < nlive:  # holes that reach the border at this step are holes no more
            if join[live[j]] <= i:
                nlive = _drop_live(live, slot, nlive, live[j])
            else:
                j += 1
        islands[i] = False
        for j in range(nlive):
            islands[i] |= node[live[j], WEIGHT] != 1
        if want_holes:
            t = asc_order[i]
            for j in range(nlive):
                buffer, count = _emit(buffer, count, m, t, HOLE, node, live[j])
    return buffer, count


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


@njit(cache=True)
def _foreground(key, counts, grid, work, asc_order, m, buffer, count, emit, largest, window_area, prefer_last):
    """`_descending` on the padded keys `key` with their `_key_counts`: bucket order and
    earlier-neighbour masks made here. Every argument explicit, so numba compiles one version."""
    order, starts = _bucket_order(key, grid.height, grid.width, counts)
    _earlier_mask(key, grid.height, grid.width, work.earlier)
    return _descending(order, starts, grid, work, asc_order, m, buffer, count, emit, largest=largest,
                       window_area=window_area, prefer_last=prefer_last)


@njit(cache=True, nogil=True)
def map_extents(values, cuts, height, width, wsoleval, want_all, levels=False):
    """All maps: largest extents (N, T, 4) and, with `want_all`, rows (M, 7) of every component.

    `values` (N, H*W) with H, W = `height`, `width`: floats compared exactly with the float64
    cuts, or with `levels` 8-bit levels (integers 0..255, looked up in a 256-entry table per
    map). SAT (`wsoleval` False): pixel counts, ties to the first. wsoleval: holes filled, polygon
    areas, ties to the last; the rows also list the holes (kind `HOLE`).

    wsoleval per map: the hole-filled keys (`_filled_levels`), the holes from the lake pixels
    (`_holes`, only for maps with a hole at some step), then the foreground pass on the
    hole-filled map (largest contour; and every contour at the steps where no hole encloses
    foreground, since there filled and unfilled components have the same extents). A second
    foreground pass on the unfilled map lists the contours of the other steps, only for maps that
    have such islands.
    """
    N, T = cuts.shape
    H, W = height, width
    largest = np.empty((N, T, 4), dtype=np.int64)
    buffer = np.empty((1024, 7), dtype=np.int64)
    count = 0
    work = _workspace(H, W)
    grid = _grid(H, W)
    islands = np.zeros(T, dtype=np.bool_)
    unused = np.empty((T, 4), dtype=np.int64)  # the islands pass's largest extents (not wanted)
    for m in range(N):
        asc_order = np.argsort(cuts[m], kind="mergesort")
        sorted_cuts = cuts[m][asc_order]
        if levels:
            _below_levels(values[m], sorted_cuts, H, W, work.below)
        else:
            _below(values[m], sorted_cuts, H, W, work.below)
        emit = np.full(T, want_all)
        if not wsoleval:
            buffer, count = _foreground(work.below, _key_counts(work.below, H, W, T), grid, work, asc_order, m, buffer,
                                        count, emit, largest[m], window_area=False, prefer_last=False)
            continue
        counts = np.zeros(T + 2, dtype=np.int64)
        candidates = _filled_levels(work.below, work.join, counts, work.lakes, work.queue, work.active, H, W)
        if candidates:
            buffer, count = _holes(work.below, work.join, candidates, grid, work, asc_order, m, buffer, count,
                                   islands=islands, want_holes=want_all)
            if want_all and islands.any():  # contours inside holes: from the unfilled map at those steps
                buffer, count = _foreground(work.below, _key_counts(work.below, H, W, T), grid, work, asc_order, m,
                                            buffer, count, islands, unused, window_area=False, prefer_last=False)
                emit &= ~islands
        buffer, count = _foreground(work.join, counts, grid, work, asc_order, m, buffer, count, emit, largest[m],
                                    window_area=True, prefer_last=True)
    return largest, buffer[:count].copy()
