"""DL/T 645-2007, the protocol of Chinese residential meters (DESIGN.md 10 "Protocols").

``codec`` is pure and MicroPython-safe (shared with the MCU app); ``transport`` is the
agent's serial / transparent-TCP adapter; ``plan`` turns a profile into the DIs to read.
"""
