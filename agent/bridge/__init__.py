# The serial bridge between a MicroPython gateway MCU and the agent (DESIGN.md 7).
# framing.py runs unchanged on both runtimes; source.py is the agent's side (CPython).
# Kept empty so that importing agent.bridge.framing on the MCU pulls in nothing else.
