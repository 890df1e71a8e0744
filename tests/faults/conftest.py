"""Fixtures for the fault campaigns (tests/faults/): a small real file system that can be
filled up, and the session's campaign table printed at the end of the run.

Run every campaign with its table: ``make faults`` (= ``pytest -q -s tests/faults``); the
table is printed by ``pytest_terminal_summary`` in ``tests/conftest.py`` whenever a campaign
ran (also at the end of ``make test``, whose pytest-xdist workers hand their rows to the
controller). The row API is in ``campaign.py``.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import pytest

# A directory on a small file system prepared by hand, for machines where the tests cannot
# mount one themselves (not root): e.g.
#   sudo mkdir -p /mnt/lwfull && sudo mount -t tmpfs -o size=4m tmpfs /mnt/lwfull
#   sudo chmod 1777 /mnt/lwfull && LOADWATCH_SMALL_FS=/mnt/lwfull make faults
SMALL_FS_ENV = "LOADWATCH_SMALL_FS"


class SmallFs:
    """A real, small file system that the test may fill to the last byte and free again.

    ``fill()`` writes a ballast file until the kernel says ENOSPC, so whatever writes there
    next (the outbox, the state file) meets a genuinely full disk, not a simulated error;
    ``free()`` deletes the ballast. ``path`` is an empty directory on it.
    """

    def __init__(self, root: Path, size: int = 0):
        self.root = root
        self.size = size
        self.path = root / ("fs-%d" % os.getpid())
        self.path.mkdir()
        self._ballast = root / ("ballast-%d" % os.getpid())

    def fill(self) -> int:
        """Fill the file system to the last byte; returns the bytes written."""
        written = 0
        fd = os.open(self._ballast, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for chunk in (65536, 4096, 1):
                while True:
                    try:
                        n = os.write(fd, b"\0" * chunk)
                    except OSError:
                        break
                    written += n
                    if n < chunk:
                        break
        finally:
            os.close(fd)
        return written

    def free(self) -> None:
        self._ballast.unlink(missing_ok=True)

    def available(self) -> int:
        st = os.statvfs(self.root)
        return st.f_bavail * st.f_frsize


@pytest.fixture
def small_fs(request):
    """A fresh tmpfs of ``size`` bytes (``@pytest.mark.parametrize`` indirect, default
    2 MiB), mounted by the test (root needed), or the directory named by $LOADWATCH_SMALL_FS.
    Skips loudly, naming both ways, when neither is available."""
    size = getattr(request, "param", 8 * 1024 * 1024)
    given = os.environ.get(SMALL_FS_ENV)
    if given:
        fs = SmallFs(Path(given))
        try:
            yield fs
        finally:
            fs.free()
            subprocess.run(["rm", "-rf", str(fs.path)], check=False)
        return
    mnt = Path(tempfile.mkdtemp(prefix="lw-small-fs-"))
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%d,mode=1777" % size, "tmpfs",
                          str(mnt)], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        mnt.rmdir()
        pytest.skip("FULL-DISK CAMPAIGN NOT RUN: cannot mount a %d-byte tmpfs (%s); run as "
                    "root, or mount one yourself and set %s=<dir on it> (see "
                    "tests/faults/conftest.py)" % (size, out.stderr.strip() or out.returncode,
                                                   SMALL_FS_ENV))
    try:
        yield SmallFs(mnt, size)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
        mnt.rmdir()
