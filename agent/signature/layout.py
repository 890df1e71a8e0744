"""Where each number of a detector's packed state lives (one name per index).

A meter's detector keeps its state in two arrays instead of ~60 attributes: on MicroPython
every attribute is a 16-byte map entry and every float in one a heap object of its own, so
the packed form is what keeps an MCU meter under 2 KB (bench/footprint.py). The modules of
this package (day-close learning, hourly features, the score) share these indices.

Names are public (no leading underscore) because MicroPython does not export ``const``
names that start with one.
"""

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


NO_DATA = const(-1)  # an hour (or slot) with no usable samples
NHOUR = const(24)  # hours of the local day: the unit of the baseline and of a block

# ``f``: an array('d') on MicroPython (a list on CPython): every float and count.
# The open slot (touched on every sample by the fast path):
SEND = const(0)  # end time of the open slot (-inf: none open, the next sample opens one)
TLAST = const(1)  # time of the last accepted sample
N = const(2)  # samples in the open slot
REF = const(3)  # first sample of the open slot, W: sums are of (p - ref) so the variance
#                 does not cancel catastrophically on single-precision ports
S = const(4)  # sum of (p - ref)
SS = const(5)  # sum of (p - ref) ** 2
MN = const(6)  # lowest sample of the open slot, W
MX = const(7)  # highest sample of the open slot, W
NPF = const(8)  # power-factor samples in the open slot
SPF = const(9)  # their sum
TCLOSE = const(10)  # time of the last closed slot's last sample (-inf: none closed yet)
# Slow averages at the slots inside a risen block (where the rig shows itself):
JIT = const(11)  # EMA of in-slot relative spread (-1: not seen)
PF = const(12)  # EMA of power factor (-1: not seen)
SCORE = const(13)  # the score, 0..100 (read as .score)
LVLH = const(14)  # hours the 24-h floor has stayed above level_kw (backstop)
COVER = const(15)  # share of the last 24 hours holding data at the last evaluation
# The open hour: the two lowest slot means so far (how many slots it has had: HCNT).
HMIN = const(16)
HMIN2 = const(17)
# The block streak: the same block seen on consecutive days (closed when the block ends).
BL_START = const(18)  # start hour of day (0..23)
BL_LEN = const(19)  # length, hours
BL_LEVEL = const(20)  # level at its last close, kW
BL_DAYS = const(21)  # repetitions seen in a row (0: no streak)
BL_VAR = const(22)  # largest day-to-day level change over the streak, share of the level
BL_LAST = const(23)  # time of its last close
BL_FLAT = const(24)  # flatness of its last close (share of hours at the level)
BL_EDGE = const(25)  # edge contrast of its last close (outside excess / level, 0 = sharp)
BL_RISE = const(26)  # 1 if the level has stepped up inside the streak (rig added: ramp)
UP = const(27)  # hours the judged block has been risen (persistence, at the last evaluation)
ONSET = const(28)  # time the judged block's run began (valid while UP > 0)
BL_SHIFT = const(29)  # largest edge shift (hours) between repetitions of the streak
C = const(30)  # contributions of the last evaluation, in FEATURES order (NFEAT values)
NFEAT = const(9)
FIG = const(39)  # figures of the last evaluation for evidence() (NFIG values, FG_*)
NFIG = const(9)
BH = const(48)  # protected baseline floor of each local hour, kW (NHOUR values)
DH = const(72)  # learned day-to-day deviation of each hour's floor, kW (NHOUR values)
# Slot, hour and day numbers grow with time, so they are kept as doubles (exact to 2**53).
SIDX = const(96)  # local slot number (floor((t + tz) / slot_s)) of the open slot
LIDX = const(97)  # local slot number of the last closed slot
BL_SINCE = const(98)  # when the streak's first block began
WID = const(99)  # the widening threshold of the last evaluation, kW (inf: none)
UIDX = const(100)  # this detector's number (keys the shared output cache; not saved)
NF = const(101)

# ``ring``: an array('i') of small ints, then the floor (W) of each of the last 24 hours.
LMEAN = const(0)  # last closed slot mean (W), held across empty slots; NO_DATA: none
DAYS = const(1)  # full days learned into the baseline
HAVEDAY = const(2)  # 0 until a first hour has been closed
BACK = const(3)  # samples from far in the past since the last slot close (clock resync)
HASC = const(4)  # 1 once contributions have been computed
EVK = const(5)  # what evidence() describes (EV_*)
EVN = const(6)  # evaluation number (keys the shared output cache)
READY = const(7)  # 1 once warmed up (read as .ready)
UPB = const(8)  # the last evaluation's up hours (bit h: local hour h), bit 24: streak alive
SPB = const(9)  # slots per hour (from slot_s; here rather than an attribute: see above)
HCNT = const(10)  # slots the open hour has had
HIDX = const(11)  # local hour number of the open hour (-1: none open)
LHOUR = const(12)  # local hour number of the last closed hour (-1: none yet)
DAYIDX = const(13)  # local day number whose close is pending
HV = const(14)  # floor of each local hour, latest instance within the last 24 h (NHOUR)
NR = const(38)

EV_WARM = const(0)  # evidence(): warming up with no history yet,
EV_FIG = const(1)  # ... the figures of the last evaluation,
EV_COVER = const(2)  # ... too little data in the last 24 h,
EV_RESYNC = const(3)  # ... a clock re-synchronisation

# The figures (FIG + k) an evaluation leaves for evidence():
FG_START = const(0)  # start hour of the block judged (-1: none)
FG_LEN = const(1)  # its length, hours
FG_LEVEL = const(2)  # its level, kW
FG_FLAT = const(3)  # share of its hours at the level
FG_EDGE = const(4)  # edge contrast
FG_DAYS = const(5)  # repetitions seen
FG_VAR = const(6)  # day-to-day level change, share
FG_SCHED = const(7)  # 1: the block is a schedule (< 22 h), 0: 24/7, -1: no block
FG_Z = const(8)  # level against the block hours' usual day-to-day movement
