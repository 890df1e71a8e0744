"""Hourly features: which hours of the last 24 rose above their own baseline, and the block.

A rig adds the same watts, with sharp edges at the same clock times, every day. So each
local hour keeps a protected baseline of its floor (daylearn.py); at every hour close the
last 24 hour floors are compared with it, hour by hour:

* an hour is *up* when its floor rose by at least ``step_lo_kw`` and by ``up_z`` times
  how much that hour usually moves from day to day (an evening floor moves more than a
  3 a.m. floor, so the same watts mean more at night); once some hours are, a busy hour
  that rose by 60 % of their level counts too (``widen``);
* the *block* is the longest run of up hours in the window (oldest hour first, so a night
  block over midnight stays in one piece), a single dip inside bridged (a rig restart);
* its *level* is the median rise over its up hours, its *flatness* the share of its hours
  within ``flat_tol`` of that level, its *edges* how far the hours just outside it rose
  (0: sharp, as a switch; a thermostat or the weather gives soft edges).

Only ``math``-free integer and float arithmetic over 24 values: this runs once per hour.
"""

from agent.signature.layout import BH, DH, HV, NHOUR


def floor_cover(ring):
    """(share of the last 24 hours holding data, the lowest of their floors in kW; inf
    when none holds data): the coverage gate and the 24-h floor of the level backstop."""
    have = 0
    floor = float("inf")
    for k in range(HV, HV + NHOUR):
        w = ring[k]
        if w >= 0:
            have += 1
            if w < floor:
                floor = w
    return have / NHOUR, floor / 1000.0


def window(f, ring, s, h_now):
    """Rise (kW, None where no data) and up flag of the last 24 hours, oldest first."""
    lo = s["step_lo_kw"]
    z = s["up_z"]
    dev0 = s["dev_floor_kw"]
    e = [None] * NHOUR
    up = [False] * NHOUR
    h = h_now + 1
    for p in range(NHOUR):
        if h >= NHOUR:
            h -= NHOUR
        w = ring[HV + h]
        if w >= 0 and f[DH + h] > 0.0:  # (DH 0: this hour was never learned)
            x = w / 1000.0 - f[BH + h]
            e[p] = x
            thr = z * (f[DH + h] + dev0)
            if x >= (thr if thr > lo else lo):
                up[p] = True
        h += 1
    return e, up


def widen(e, up, s):
    """(up, plus the hours that rose by 60 % of the strictest block's level, and that
    threshold): a busy hour (breakfast, the evening) moves too much to be *up* on its own,
    but a rig lifts it too. The threshold is inf when no hour is up."""
    a, n, _ = runs(up)
    if n == 0:
        return up, float("inf")
    vals = []
    for p in range(a, a + n):
        vals.append(e[p])
    vals.sort()
    level = vals[len(vals) // 2]
    lo = 0.5 * level
    if lo < s["step_lo_kw"]:
        lo = s["step_lo_kw"]
    out = list(up)
    for p in range(NHOUR):
        x = e[p]
        if x is not None and x >= lo:
            out[p] = True
    # A single hour that rose less, between two that rose (a busy hour whose floor was
    # low that day), is inside the block too, and so is any single hour between two
    # runs of three (an hour whose baseline is still high from a busy first day); a
    # lone hour that did not rise next to a short run is not.
    dip = 0.3 * level
    for p in range(1, NHOUR - 1):
        if out[p] or not out[p - 1] or not out[p + 1]:
            continue
        x = e[p]
        if (x is not None and x >= dip) or (
                3 <= p <= NHOUR - 4 and out[p - 2] and out[p - 3] and out[p + 2]
                and out[p + 3]):
            out[p] = True
    return out, lo


def bridged(e, up):
    """up, with hours without data next to up hours filled: between two up hours, or at
    either end of the window (a poller that fell behind, a link down: no data is no
    evidence either way, and must not end a block). A rig restart needs no bridge: an
    hour's floor is its second-lowest slot, and one dipped slot is not it."""
    u = list(up)
    p = 0
    while p < NHOUR:
        if e[p] is not None:
            p += 1
            continue
        q = p
        while q < NHOUR and e[q] is None:
            q += 1
        left = p == 0 or up[p - 1]
        right = q == NHOUR or up[q]
        if left and right and (p > 0 or q < NHOUR):
            for k in range(p, q):
                u[k] = True
        p = q
    return u


def runs(u):
    """(start, length) of the longest run of True in u (the later one on ties), and the
    length of the run that ends at the newest hour."""
    best_a = 0
    best_n = 0
    a = 0
    n = 0
    for p in range(NHOUR):
        if u[p]:
            if n == 0:
                a = p
            n += 1
            if n >= best_n:
                best_a = a
                best_n = n
        else:
            n = 0
    return best_a, best_n, n


def describe(e, up, a, n, s, f=None, h0=0):
    """(level kW, flatness 0..1, edge contrast, up hours) of the block [a, a + n).

    An hour is at the level within ``flat_tol`` of it, or within 1.5 times that hour's
    usual day-to-day move (``f`` given; position a is local hour h0; above the level,
    twice that): a busy evening cannot be expected to be as flat as 3 a.m."""
    vals = []
    for p in range(a, a + n):
        if up[p] and e[p] is not None:
            vals.append(e[p])
    if len(vals) == 0:
        return 0.0, 0.0, 1.0, 0
    vals.sort()
    level = vals[len(vals) // 2]
    tol0 = s["flat_tol"] * level
    if tol0 < 0.08:
        tol0 = 0.08
    dev0 = s["dev_floor_kw"]
    good = 0
    seen = 0
    h = h0
    for p in range(a, a + n):
        x = e[p]
        if x is not None:
            seen += 1
            tol = tol0
            up_tol = tol0
            if f is not None:
                tol = 1.5 * (f[DH + h] + dev0)
                if tol < tol0:
                    tol = tol0
                # the household on top of a rig adds, at its busy hours, what it adds
                up_tol = tol + 1.5 * (f[DH + h] + dev0)
            if -tol <= x - level <= up_tol:
                good += 1
        h += 1
        if h >= NHOUR:
            h = 0
    flat = good / seen if seen > 0 else 0.0
    edge = 0.0
    if level > 0.0:
        if a > 0 and e[a - 1] is not None and e[a - 1] > edge:
            edge = e[a - 1]
        b = a + n
        if b < NHOUR and e[b] is not None and e[b] > edge:
            edge = e[b]
        edge = edge / level
    return level, flat, edge, len(vals)


def weather_shape(e, a, n, h0, level, f, s):
    """How far the rise in the small hours (02-07) and the rise mid-afternoon (13-17)
    differ, beyond what those hours usually move from day to day, as a share of the level
    (0: the same; -1: the block does not cover both).

    Heating follows the outdoor temperature's daily cycle, coldest before dawn and
    warmest mid-afternoon, and cooling the reverse; a rig draws the same at both."""
    cold = []
    warm = []
    move = 0.0
    h = h0
    dev0 = s["dev_floor_kw"]
    for p in range(a, a + n):
        x = e[p]
        if x is not None and (2 <= h < 7 or 13 <= h < 17):
            (cold if h < 7 else warm).append(x)
            move += f[DH + h] + dev0
        h += 1
        if h >= NHOUR:
            h = 0
    if len(cold) < 3 or len(warm) < 2 or level <= 0.0:
        return -1.0
    cold.sort()
    warm.sort()
    d = cold[len(cold) // 2] - warm[len(warm) // 2]
    if d < 0.0:
        d = -d
    d -= 2.0 * move / (len(cold) + len(warm))
    return d / level if d > 0.0 else 0.0


def usual_move(f, s, h0, n):
    """Mean learned day-to-day movement (kW) of the hours h0 .. h0 + n - 1 of the day."""
    dev0 = s["dev_floor_kw"]
    tot = 0.0
    h = h0
    for _ in range(n):
        if h >= NHOUR:
            h -= NHOUR
        tot += f[DH + h] + dev0
        h += 1
    return tot / n if n > 0 else dev0
