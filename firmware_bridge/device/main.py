# Loadwatch gateway firmware: runs at boot on the board (and under the unix port in tests:
# `micropython main.py config.json`). Everything lives in app.py so that it is
# precompiled to .mpy; MicroPython always runs main.py from source, so keep this tiny.
import app

app.main()
