"""What a detector learns when a block or a day closes.

* **Block close** (an up run of at least ``min_block_h`` hours has just ended, or a 24-h
  run reached the end of the day): the block joins the *streak* if it repeats yesterday's
  (one edge within an hour, the other within two - a busy hour next to it may blur one -
  or a first block cut short by the onset; level not fallen by more than ``level_drop``);
  else, if it overlaps the streak's hours, it starts a new streak (a block elsewhere in the
  day - the household, another load - leaves a live streak alone). A level that stepped
  up by more than ``level_step`` is a rig added (a ramp): it is noted, not held against
  constancy; any other change counts in the streak's level variation.
* **Day close**: each hour's protected baseline moves toward the floor that hour had today.
  Drops are followed at once (``learn_down``); small rises slowly (``learn_up``); a rise
  that makes the hour *up* is learned only once its streak has been judged for
  ``judge_days`` and scored below ``learn_below`` - a rig is never learned as normal. The
  hour's usual day-to-day movement is learned from the days it was not protected.
"""

from agent.signature.features import describe
from agent.signature.layout import (
    BH,
    BL_DAYS,
    BL_EDGE,
    BL_FLAT,
    BL_LAST,
    BL_LEN,
    BL_LEVEL,
    BL_RISE,
    BL_SHIFT,
    BL_SINCE,
    BL_START,
    BL_VAR,
    DAYS,
    DH,
    HV,
    NHOUR,
    READY,
    SCORE,
)

_STREAK_GAP_S = 30.0 * 3600.0  # a block not seen again within this is not a repetition


def _cdist(a, b):
    d = a - b
    if d < 0:
        d = -d
    d = d % NHOUR
    return NHOUR - d if d > NHOUR - d else d


def _overlaps(a, n, b, m):
    """True when the blocks [a, a + n) and [b, b + m) of the day share half the shorter."""
    common = 0
    for k in range(m):
        if (b + k - a) % NHOUR < n:
            common += 1
    return 2 * common >= (m if m < n else n)


def streak_alive(f, t):
    return f[BL_DAYS] >= 1.0 and t - f[BL_LAST] <= _STREAK_GAP_S


def block_closed(f, s, t, start_h, n, level, flat, edge):
    """A block of n hours from local hour start_h at ``level`` kW has just ended."""
    if streak_alive(f, t) and level > 0.0:
        plen = int(f[BL_LEN])
        pstart = int(f[BL_START])
        shift = 0
        if n >= NHOUR or plen >= NHOUR:
            same = n >= NHOUR and plen >= NHOUR
        else:
            # A switch keeps both edges; a busy hour next to the block may blur one of them
            # by an hour. The first block may have been cut short by the onset.
            de = _cdist((pstart + plen) % NHOUR, (start_h + n) % NHOUR)
            ds = _cdist(pstart, start_h)
            if f[BL_DAYS] == 1.0 and n > plen and de <= 1:
                ds = 0
            same = de <= 2 and ds <= 2 and (de <= 1 or ds <= 1)
            shift = de if de > ds else ds
        lp = f[BL_LEVEL]
        ch = (level - lp) / lp if lp > 0.0 else 0.0
        if same and ch >= -s["level_drop"]:
            f[BL_DAYS] += 1.0
            if ch > s["level_step"]:
                f[BL_RISE] = 1.0
            else:
                a = ch if ch > 0.0 else -ch
                if a > f[BL_VAR]:
                    f[BL_VAR] = a
            if shift > f[BL_SHIFT]:
                f[BL_SHIFT] = shift
            f[BL_START] = start_h
            f[BL_LEN] = n
            f[BL_LEVEL] = level
            f[BL_FLAT] = flat
            f[BL_EDGE] = edge
            f[BL_LAST] = t
            return
        if not _overlaps(pstart, plen, start_h, n):
            return  # another part of the day (the household, another load): keep the streak
    f[BL_DAYS] = 1.0
    f[BL_SINCE] = t - n * 3600.0
    f[BL_VAR] = 0.0
    f[BL_SHIFT] = 0.0
    f[BL_RISE] = 0.0
    f[BL_START] = start_h
    f[BL_LEN] = n
    f[BL_LEVEL] = level
    f[BL_FLAT] = flat
    f[BL_EDGE] = edge
    f[BL_LAST] = t


def blocks_ended(e, up, u, cn, h_now, t, f, s):
    """Give the streak the blocks that the hour just closed (local hour ``h_now``) ended.

    ``e``/``up`` are the window's rises and up hours (features.window, widened), ``u`` the
    same bridged over hours without data, ``cn`` the length of the run ending now. A block
    has ended when the newest hour (with data) is down; a 24-h run is closed as a block at
    the end of each local day, so a 24/7 rig repeats too."""
    min_h = int(s["min_block_h"])
    if not up[NHOUR - 1] and e[NHOUR - 1] is not None:
        b = NHOUR - 2
        while b >= 0 and u[b]:
            b -= 1
        m = NHOUR - 2 - b
        if m >= min_h:
            a = b + 1
            # Where the block ended: its last hours that rose by less than a quarter of
            # its level are the household's (a morning on top of a large night block),
            # not the block's; kept, they move its end from day to day with the
            # household, and a rig's next night is taken for another block.
            lv, _, _, _ = describe(e, up, a, m, s)
            while m > min_h and e[a + m - 1] is not None and e[a + m - 1] < 0.25 * lv:
                m -= 1
            hs = (h_now + 1 + a) % NHOUR
            lv, fl, ed, _ = describe(e, up, a, m, s, f, hs)
            block_closed(f, s, t, hs, m, lv, fl, ed)
    if h_now == NHOUR - 1 and cn >= NHOUR:
        lv, fl, ed, _ = describe(e, up, 0, NHOUR, s, f, 0)
        block_closed(f, s, t, 0, NHOUR, lv, fl, 0.0)


def day_closed(f, ring, s):
    """Learn the day just ended into each hour's protected baseline."""
    days = ring[DAYS]
    lo = s["step_lo_kw"]
    z = s["up_z"]
    dev0 = s["dev_floor_kw"]
    judged = f[BL_DAYS] >= s["judge_days"] and f[SCORE] < s["learn_below"]
    up_rate = s["learn_up"]
    down_rate = s["learn_down"]
    for h in range(NHOUR):
        w = ring[HV + h]
        if w < 0:
            continue
        x = w / 1000.0
        if f[DH + h] <= 0.0:  # never seen this hour: take it as it is
            f[BH + h] = x
            f[DH + h] = s["dev_init_kw"]
            continue
        dx = x - f[BH + h]
        thr = z * (f[DH + h] + dev0)
        if thr < lo:
            thr = lo
        if dx < 0.0:
            rate = down_rate
        elif dx < thr or judged:
            rate = up_rate
        else:
            continue  # protected: a rise that scores as a rig is not learned
        f[BH + h] += rate * dx
        a = dx if dx > 0.0 else -dx
        if a > thr:
            a = thr
        f[DH + h] += up_rate * (a - f[DH + h])
    ring[DAYS] = days + 1
    ring[READY] = 1 if days + 1 >= s["warmup_days"] else 0
