"""Small numeric helpers that behave the same on CPython and every MicroPython port."""

import math


def ifloor(x):
    """floor(x) as an int on every port (math.floor returns a float on some)."""
    i = int(x)
    return i - 1 if i > x else i


def clamp01(x):
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    return x


def ramp(x, lo, hi):
    """0 at lo, 1 at hi, linear between (hi < lo gives a falling ramp)."""
    if hi == lo:
        return 1.0 if x >= hi else 0.0
    return clamp01((x - lo) / (hi - lo))


def rises(x, lo, hi):
    """0 below lo, then linear to 1 at hi (persistence and repetitions start at lo)."""
    if x < lo:
        return 0.0
    if x >= hi:
        return 1.0
    return (x - lo) / (hi - lo)


def falls(x, good, bad):
    """1 at or below good, 0 at or above bad, linear between."""
    if x <= good:
        return 1.0
    if x >= bad:
        return 0.0
    return (bad - x) / (bad - good)


def rnd(x, scale):
    """Round half away from zero to 1/scale without round(x, n) (differs across ports)."""
    if x < 0:
        return -math.floor(-x * scale + 0.5) / scale
    return math.floor(x * scale + 0.5) / scale


def civil(days):
    """Days since 1970-01-01 -> "YYYY-MM-DD" (H. Hinnant's civil_from_days, no time module)."""
    z = days + 719468
    era = (z if z >= 0 else z - 146096) // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    if m <= 2:
        y += 1
    return "%04d-%02d-%02d" % (y, m, d)
