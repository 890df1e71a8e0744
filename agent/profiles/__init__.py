"""Meter register maps as data: one TOML file per meter model, validated on load.

After mbmd's ``meters/rs485/*.go`` (one map per meter) and ESPHome's ``modbus_controller``
sensors, but as data: a profile lists quantities by standard name with function code,
address, type, word order, scale and unit, plus named device quirks (Telegraf's
``workarounds``). Everything that can be wrong with a map is found here, at load time, and
reported with the file and the quantity, so the poller never meets a bad map.

File layout (see ``generic.toml``, the one users copy)::

    name = "sdm630"
    title = "Eastron SDM630 (three-phase)"
    source = "where the map comes from"
    unconfirmed = ["quantities not checked against a datasheet"]
    [defaults]            # applied to every quantity that does not say otherwise
    fc = 4
    type = "float32"
    word_order = "ABCD"
    [quirks]
    max_registers = 80
    max_gap = 16
    pause_ms = 0
    timeout_ms = 500      # optional
    word_order = "CDAB"   # optional: override every 32-bit field (misconfigured meters)
    frozen_s = 900        # optional: identical readings for this long are flagged frozen
    [identify]            # optional: how ``loadwatch scan`` recognises this meter
    quantity = "v_v_l1"   # read it; the decoded value must fall in [min, max]
    min = 80.0
    max = 300.0
    [quantities]
    p_w = { address = 0x0034, unit = "W" }
    pf  = { address = 0x003E, scale = 1.0 }

A DL/T 645-2007 profile (DESIGN.md 10) says ``protocol = "dlt645"`` and maps quantities
to data identifiers instead of registers, in the standard's own notation (appendix A)::

    protocol = "dlt645"
    [quantities]
    p_w = { di = "02030000", format = "XX.XXXX", signed = true, scale = 1000.0 }
    e_import_kwh = { di = "00010000", format = "XXXXXX.XX" }
    [blocks]              # optional: DIs that answer several quantities at once
    "0203FF00" = ["p_w", "p_w_l1", "p_w_l2", "p_w_l3"]

A block is read instead of its members when two or more of them are wanted; its reply
is the members' values back to back, in the order listed.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from agent.settings import DI_QUIRK_KEYS, QUIRK_KEYS, QUIRKS, WORD_ORDERS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.9/3.10 only
    import tomli as tomllib

HERE = Path(__file__).resolve().parent

TYPES = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2}
FUNCTION_CODES = (3, 4)

# Standard quantity names (DESIGN.md 2) and the unit each one is expressed in after
# scaling. ``i_a`` on a three-phase meter is the sum of the line currents, ``v_v`` the mean
# line-to-neutral voltage, so that p_w ~= v_v * i_a * pf holds on a balanced load.
_BASE_UNITS = {
    "p_w": "W", "q_var": "var", "s_va": "VA", "pf": "", "v_v": "V", "i_a": "A",
    "f_hz": "Hz", "e_import_kwh": "kWh", "e_export_kwh": "kWh", "e_total_kwh": "kWh",
}
_PHASED = ("p_w", "q_var", "s_va", "pf", "v_v", "i_a", "e_import_kwh")
QUANTITY_UNITS: dict[str, str] = dict(_BASE_UNITS)
for _q in _PHASED:
    for _ph in ("l1", "l2", "l3"):
        QUANTITY_UNITS["%s_%s" % (_q, _ph)] = _BASE_UNITS[_q]
KNOWN_QUANTITIES = frozenset(QUANTITY_UNITS)

_FIELD_KEYS = {"fc", "address", "type", "word_order", "scale", "unit"}
_QUIRK_KEYS = set(QUIRK_KEYS)
_TOP_KEYS = {"name", "title", "source", "unconfirmed", "defaults", "quirks", "identify",
             "quantities", "notes", "protocol", "blocks"}
PROTOCOLS = ("modbus", "dlt645")
_DI_KEYS = {"di", "format", "signed", "scale", "unit"}
_DI_QUIRK_KEYS = set(DI_QUIRK_KEYS)


class ProfileError(ValueError):
    """A bad profile, phrased as ``profile <file>: <quantity>: <what is wrong>``."""

    def __init__(self, source: str, message: str, quantity: str = ""):
        self.source = source
        self.quantity = quantity
        where = "%s: " % quantity if quantity else ""
        super().__init__("profile %s: %s%s" % (source, where, message))


class Field:
    """One quantity of a meter: where it lives and how to turn registers into a number."""

    __slots__ = ("address", "fc", "name", "scale", "size", "type", "unit", "word_order")

    def __init__(self, name: str, fc: int, address: int, type: str = "float32",
                 word_order: str = "ABCD", scale: float = 1.0, unit: str = ""):
        self.name = name
        self.fc = fc
        self.address = address
        self.type = type
        self.word_order = word_order
        self.scale = float(scale)
        self.unit = unit
        self.size = TYPES[type]

    @property
    def end(self) -> int:
        """One past the last register of this field."""
        return self.address + self.size

    def __repr__(self) -> str:
        return "Field(%r, fc=%d, address=%d, %s %s, scale=%g)" % (
            self.name, self.fc, self.address, self.type, self.word_order, self.scale)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Field) and all(
            getattr(self, k) == getattr(other, k) for k in self.__slots__)

    def __hash__(self) -> int:
        return hash((self.name, self.fc, self.address))


class DiField:
    """One quantity of a DL/T 645 meter: its data identifier and BCD format.

    ``format`` is the standard's notation (``"XX.XXXX"``: 6 digits, 4 after the point,
    3 bytes); ``signed`` means the top bit of the highest byte is the sign (appendix A
    marks which items may be negative); value = BCD number * ``scale`` (kW -> W: 1000).
    """

    __slots__ = ("decimals", "di", "format", "name", "scale", "signed", "size", "unit")

    def __init__(self, name: str, di: int, format: str, signed: bool = False,
                 scale: float = 1.0, unit: str = ""):
        from agent.dlt645.codec import parse_format
        self.name = name
        self.di = di
        self.format = format
        _, self.decimals, self.size = parse_format(format)
        self.signed = signed
        self.scale = float(scale)
        self.unit = unit

    def __repr__(self) -> str:
        return "DiField(%r, di=%08X, %s%s, scale=%g)" % (
            self.name, self.di, self.format, " signed" if self.signed else "", self.scale)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DiField) and all(
            getattr(self, k) == getattr(other, k) for k in self.__slots__)

    def __hash__(self) -> int:
        return hash((self.name, self.di))


class BlockSpec:
    """A DL/T 645 block DI (``0203FF00``) whose reply is its members' values in order."""

    __slots__ = ("di", "members")

    def __init__(self, di: int, members: tuple[str, ...]):
        self.di = di
        self.members = members

    def __repr__(self) -> str:
        return "BlockSpec(%08X, %r)" % (self.di, self.members)


class Quirks:
    """Device quirks as named settings, never ``if`` statements in the poll loop.

    ``max_registers`` caps one read (Modbus allows 125; some meters answer fewer),
    ``max_gap`` is how many unwanted registers a read may span to save a request,
    ``pause_ms`` the silence a slow meter needs between requests, ``timeout_ms`` a
    per-meter answer timeout (None: the bus's), ``word_order`` overrides every 32-bit
    field's order (None: as the map says), ``frozen_s`` how long identical readings may
    last before they are flagged frozen.
    """

    __slots__ = ("frozen_s", "max_gap", "max_registers", "pause_ms", "timeout_ms",
                 "word_order")

    def __init__(self, max_registers: int = 125, max_gap: int = 10, pause_ms: int = 0,
                 timeout_ms: int | None = None, word_order: str | None = None,
                 frozen_s: float = 900.0):
        self.max_registers = max_registers
        self.max_gap = max_gap
        self.pause_ms = pause_ms
        self.timeout_ms = timeout_ms
        self.word_order = word_order
        self.frozen_s = frozen_s

    def merged(self, overrides: dict) -> Quirks:
        """A copy with ``overrides`` (already validated keys) applied."""
        values = {k: getattr(self, k) for k in self.__slots__}
        for key, value in overrides.items():
            if key not in values:
                raise ValueError("unknown quirk %r" % key)
            values[key] = value
        return Quirks(**values)

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__slots__}

    def __repr__(self) -> str:
        return "Quirks(%r)" % (self.as_dict(),)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Quirks) and self.as_dict() == other.as_dict()


class Profile:
    """A validated meter map: quantities in file order, quirks and scan hints.

    ``protocol`` is "modbus" (quantities are ``Field``) or "dlt645" (``DiField``, and
    ``blocks`` lists the block DIs the meter class answers).
    """

    def __init__(self, name: str, title: str, source: str, quantities: dict[str, Any],
                 quirks: Quirks, identify: dict | None = None, path: str = "",
                 unconfirmed: list[str] | None = None, notes: str = "",
                 protocol: str = "modbus", blocks: list[BlockSpec] | None = None):
        self.protocol = protocol
        self.blocks = blocks if blocks is not None else []
        self.name = name
        self.title = title
        self.source = source
        self.quantities = quantities
        self.quirks = quirks
        self.identify = identify if identify is not None else {}
        self.path = path
        self.unconfirmed = unconfirmed if unconfirmed is not None else []
        self.notes = notes

    @property
    def function_codes(self) -> list[int]:
        return sorted({f.fc for f in self.quantities.values() if isinstance(f, Field)})

    def __repr__(self) -> str:
        return "Profile(%r, %d quantities)" % (self.name, len(self.quantities))


def available_profiles(protocol: str | None = None) -> list[str]:
    """Names of the shipped profiles (file stems in this folder), all or one protocol's."""
    names = sorted(p.stem for p in HERE.glob("*.toml"))
    if protocol is None:
        return names
    return [n for n in names if load_profile(n).protocol == protocol]


def _resolve(ref: str, base: Path | None) -> Path:
    looks_like_path = ref.endswith(".toml") or "/" in ref or "\\" in ref
    if not looks_like_path:
        p = HERE / ("%s.toml" % ref)
        if p.is_file():
            return p
        raise ProfileError(ref, "no such shipped profile (known: %s); or give a path to a "
                           ".toml file" % ", ".join(available_profiles()))
    p = Path(ref).expanduser()
    if not p.is_absolute() and base is not None:
        p = Path(base) / p
    if not p.is_file():
        raise ProfileError(str(p), "file not found")
    return p


_CACHE: dict[tuple[str, float], Profile] = {}


def load_profile(ref: str, base: Path | None = None) -> Profile:
    """Load a shipped profile by name (``"sdm630"``) or a user's file by path.

    Relative paths are relative to ``base`` (the config file's folder). Raises
    ProfileError naming the file and the quantity for anything wrong with the map.
    """
    path = _resolve(ref, base)
    try:
        key = (str(path), path.stat().st_mtime)
    except OSError as e:
        raise ProfileError(str(path), "cannot read: %s" % e.strerror) from None
    if key not in _CACHE:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ProfileError(str(path), "cannot read: %s" % e) from None
        _CACHE[key] = parse_profile(text, str(path), default_name=path.stem)
    return _CACHE[key]


def parse_profile(text: str, source: str, default_name: str = "custom") -> Profile:
    """Parse and validate profile TOML text; ``source`` names it in errors."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ProfileError(source, "not valid TOML: %s" % e) from None
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise ProfileError(source, "unknown key %r (known: %s)" % (
            unknown[0], ", ".join(sorted(_TOP_KEYS))))
    name = _str(data, "name", source, default_name)
    title = _str(data, "title", source, name)
    citation = _str(data, "source", source, "")
    protocol = _str(data, "protocol", source, "modbus")
    if protocol not in PROTOCOLS:
        raise ProfileError(source, "protocol %r is not one of %s" % (protocol,
                                                                     "|".join(PROTOCOLS)))
    if protocol == "dlt645":
        return _parse_dlt645(data, source, name, title, citation)
    if "blocks" in data:
        raise ProfileError(source, "[blocks] is for protocol = \"dlt645\" profiles")
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        raise ProfileError(source, "[defaults] must be a table")
    bad = sorted(set(defaults) - (_FIELD_KEYS - {"address"}))
    if bad:
        raise ProfileError(source, "[defaults]: unknown key %r" % bad[0])
    quirks = _quirks(data.get("quirks", {}), source)
    raw_q = data.get("quantities")
    if not isinstance(raw_q, dict) or not raw_q:
        raise ProfileError(source, "[quantities] must list at least one quantity")
    fields: dict[str, Field] = {}
    for qname, spec in raw_q.items():
        fields[qname] = _field(qname, spec, defaults, source)
    _check_overlaps(fields, source)
    if quirks.max_registers < max(f.size for f in fields.values()):
        raise ProfileError(source, "quirks.max_registers %d is smaller than a field"
                           % quirks.max_registers)
    identify = data.get("identify", {})
    if not isinstance(identify, dict):
        raise ProfileError(source, "[identify] must be a table")
    if identify:
        q = identify.get("quantity")
        if q not in fields:
            raise ProfileError(source, "identify.quantity %r is not a quantity of this "
                               "profile" % (q,))
        for k in ("min", "max"):
            if not isinstance(identify.get(k), (int, float)) or isinstance(
                    identify.get(k), bool):
                raise ProfileError(source, "identify.%s must be a number" % k)
    unconfirmed = data.get("unconfirmed", [])
    if not isinstance(unconfirmed, list) or not all(isinstance(u, str) for u in unconfirmed):
        raise ProfileError(source, "unconfirmed must be a list of strings")
    return Profile(name=name, title=title, source=citation, quantities=fields, quirks=quirks,
                   identify=identify, path=source, unconfirmed=unconfirmed,
                   notes=str(data.get("notes", "")))


def _str(data: dict, key: str, source: str, default: str) -> str:
    value = data.get(key, default)
    if not isinstance(value, str):
        raise ProfileError(source, "%s must be a string" % key)
    return value


def _quirks(raw: Any, source: str) -> Quirks:
    if not isinstance(raw, dict):
        raise ProfileError(source, "[quirks] must be a table")
    bad = sorted(set(raw) - _QUIRK_KEYS)
    if bad:
        raise ProfileError(source, "quirks: unknown key %r (known: %s)" % (
            bad[0], ", ".join(sorted(_QUIRK_KEYS))))
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "word_order":
            if value not in WORD_ORDERS:
                raise ProfileError(source, "quirks.word_order %r is not one of %s"
                                   % (value, "|".join(WORD_ORDERS)))
        else:
            kinds, lo, hi = QUIRKS[key]  # the one schema (agent/settings.py)
            if isinstance(value, bool) or not isinstance(value, kinds) or not (
                    lo <= value <= hi):
                raise ProfileError(source, "quirks.%s %r must be a number in %s..%s"
                                   % (key, value, lo, hi))
        out[key] = value
    return Quirks().merged(out)


def _field(qname: str, spec: Any, defaults: dict, source: str) -> Field:
    if qname not in KNOWN_QUANTITIES:
        raise ProfileError(source, "unknown quantity name (standard names: %s)"
                           % ", ".join(sorted(KNOWN_QUANTITIES)), qname)
    if not isinstance(spec, dict):
        raise ProfileError(source, "must be a table like { address = 0x0034 }", qname)
    bad = sorted(set(spec) - _FIELD_KEYS)
    if bad:
        raise ProfileError(source, "unknown key %r (known: %s)" % (
            bad[0], ", ".join(sorted(_FIELD_KEYS))), qname)
    merged = dict(defaults)
    merged.update(spec)
    fc = merged.get("fc")
    if fc not in FUNCTION_CODES or isinstance(fc, bool):
        raise ProfileError(source, "fc %r must be 3 (holding) or 4 (input registers)"
                           % (fc,), qname)
    address = merged.get("address")
    if isinstance(address, bool) or not isinstance(address, int):
        raise ProfileError(source, "address %r must be an integer register address"
                           % (address,), qname)
    ftype = merged.get("type", "float32")
    if ftype not in TYPES:
        raise ProfileError(source, "type %r is not one of %s" % (ftype, "|".join(TYPES)),
                           qname)
    if not 0 <= address <= 0xFFFF - TYPES[ftype] + 1:
        raise ProfileError(source, "address %r is outside 0..65535 for a %s" % (
            address, ftype), qname)
    word_order = merged.get("word_order", "ABCD")
    if word_order not in WORD_ORDERS:
        raise ProfileError(source, "word_order %r is not one of %s" % (
            word_order, "|".join(WORD_ORDERS)), qname)
    scale = merged.get("scale", 1.0)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or scale == 0:
        raise ProfileError(source, "scale %r must be a non-zero number" % (scale,), qname)
    unit = merged.get("unit", QUANTITY_UNITS[qname])
    if unit != QUANTITY_UNITS[qname]:
        raise ProfileError(source, "unit %r: %s is always in %r after scaling (use scale)"
                           % (unit, qname, QUANTITY_UNITS[qname]), qname)
    return Field(qname, fc, address, ftype, word_order, float(scale), unit)


def _check_overlaps(fields: dict[str, Field], source: str) -> None:
    by_fc: dict[int, list[Field]] = {}
    for f in fields.values():
        by_fc.setdefault(f.fc, []).append(f)
    for fc, group in by_fc.items():
        group.sort(key=lambda f: f.address)
        for a, b in zip(group, group[1:]):
            if b.address < a.end:
                raise ProfileError(source, "registers fc%d %d..%d overlap %s at %d..%d" % (
                    fc, b.address, b.end - 1, a.name, a.address, a.end - 1), b.name)


def _parse_dlt645(data: dict, source: str, name: str, title: str, citation: str) -> Profile:
    """The DL/T 645 half of parse_profile: DIs, formats and block DIs, all checked here."""
    from agent.dlt645.codec import di_int
    if "identify" in data:
        raise ProfileError(source, "[identify] is for Modbus profiles (a DL/T 645 meter "
                           "is found by its address)")
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        raise ProfileError(source, "[defaults] must be a table")
    bad = sorted(set(defaults) - (_DI_KEYS - {"di"}))
    if bad:
        raise ProfileError(source, "[defaults]: unknown key %r" % bad[0])
    raw_quirks = data.get("quirks", {})
    if isinstance(raw_quirks, dict):
        bad = sorted(set(raw_quirks) - _DI_QUIRK_KEYS)
        if bad:
            raise ProfileError(source, "quirks: %r does not apply to DL/T 645 (known: %s)"
                               % (bad[0], ", ".join(sorted(_DI_QUIRK_KEYS))))
    quirks = _quirks(raw_quirks, source)
    raw_q = data.get("quantities")
    if not isinstance(raw_q, dict) or not raw_q:
        raise ProfileError(source, "[quantities] must list at least one quantity")
    fields: dict[str, DiField] = {}
    seen: dict[int, str] = {}
    for qname, spec in raw_q.items():
        if qname not in KNOWN_QUANTITIES:
            raise ProfileError(source, "unknown quantity name (standard names: %s)"
                               % ", ".join(sorted(KNOWN_QUANTITIES)), qname)
        if not isinstance(spec, dict):
            raise ProfileError(source, "must be a table like { di = \"02030000\", format = "
                               "\"XX.XXXX\" }", qname)
        bad = sorted(set(spec) - _DI_KEYS)
        if bad:
            raise ProfileError(source, "unknown key %r (known: %s)" % (
                bad[0], ", ".join(sorted(_DI_KEYS))), qname)
        merged = dict(defaults)
        merged.update(spec)
        di_text = merged.get("di")
        try:
            if not isinstance(di_text, str):
                raise ValueError("missing")
            di = di_int(di_text)
        except ValueError:
            raise ProfileError(source, "di %r must be 8 hex digits, DI3 first (e.g. "
                               "\"02030000\")" % (di_text,), qname) from None
        if di in seen:
            raise ProfileError(source, "di %s is also %s" % (di_text, seen[di]), qname)
        seen[di] = qname
        fmt = merged.get("format")
        try:
            if not isinstance(fmt, str):
                raise ValueError("format is required")
            from agent.dlt645.codec import parse_format
            parse_format(fmt)
        except ValueError as e:
            raise ProfileError(source, "format %r: %s" % (fmt, e), qname) from None
        signed = merged.get("signed", False)
        if not isinstance(signed, bool):
            raise ProfileError(source, "signed %r must be true or false" % (signed,), qname)
        scale = merged.get("scale", 1.0)
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or scale == 0:
            raise ProfileError(source, "scale %r must be a non-zero number" % (scale,), qname)
        unit = merged.get("unit", QUANTITY_UNITS[qname])
        if unit != QUANTITY_UNITS[qname]:
            raise ProfileError(source, "unit %r: %s is always in %r after scaling (use "
                               "scale)" % (unit, qname, QUANTITY_UNITS[qname]), qname)
        fields[qname] = DiField(qname, di, fmt, signed, float(scale), unit)
    blocks = _blocks(data.get("blocks", {}), fields, source)
    unconfirmed = data.get("unconfirmed", [])
    if not isinstance(unconfirmed, list) or not all(isinstance(u, str) for u in unconfirmed):
        raise ProfileError(source, "unconfirmed must be a list of strings")
    return Profile(name=name, title=title, source=citation, quantities=fields, quirks=quirks,
                   path=source, unconfirmed=unconfirmed, notes=str(data.get("notes", "")),
                   protocol="dlt645", blocks=blocks)


def _blocks(raw: Any, fields: dict[str, DiField], source: str) -> list[BlockSpec]:
    from agent.dlt645.codec import MAX_DATA, di_int
    if not isinstance(raw, dict):
        raise ProfileError(source, "[blocks] must be a table of \"DI\" = [quantities]")
    out: list[BlockSpec] = []
    member_of: dict[str, str] = {}
    for di_text, members in raw.items():
        try:
            di = di_int(di_text)
        except ValueError:
            raise ProfileError(source, "blocks: %r must be 8 hex digits" % di_text) from None
        if any(f.di == di for f in fields.values()):
            raise ProfileError(source, "blocks: %s is also a quantity's own di" % di_text)
        if not isinstance(members, list) or len(members) < 2 or not all(
                isinstance(m, str) for m in members):
            raise ProfileError(source, "blocks.%s must list two or more quantities" % di_text)
        for m in members:
            if m not in fields:
                raise ProfileError(source, "blocks.%s: %r is not a quantity of this profile"
                                   % (di_text, m))
            if m in member_of:
                raise ProfileError(source, "blocks.%s: %s is already in block %s"
                                   % (di_text, m, member_of[m]))
            member_of[m] = di_text
        if 4 + sum(fields[m].size for m in members) > MAX_DATA:
            raise ProfileError(source, "blocks.%s: reply longer than %d bytes"
                               % (di_text, MAX_DATA))
        out.append(BlockSpec(di, tuple(members)))
    return out
