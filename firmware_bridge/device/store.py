"""Flash storage: detector state and the alert queue, written so a power cut cannot
leave a torn file behind.

Writes go to ``name.tmp`` and are renamed over the old file (atomic on LittleFS, the
default filesystem on ESP32 and RP2040; FAT refuses to rename over an existing file, so
the old one is removed first there and ``load`` falls back to the ``.tmp``). Flash wears:
the state is written every ``state_every_s`` and when an alert changes, not per sample.
"""

import json
import os


class Store:
    def __init__(self, root):
        self.root = root.rstrip("/") if root not in ("", "/") else ""
        if self.root:
            try:
                os.mkdir(self.root)
            except OSError:
                pass  # exists
        self.writes = 0

    def path(self, name):
        return "%s/%s" % (self.root, name) if self.root else "/" + name

    def save(self, name, obj):
        self.save_with(name, lambda f: json.dump(obj, f))

    def save_with(self, name, write):
        """Atomic write of whatever ``write(file)`` writes: lets the app stream a big
        document (all meters' state) without holding it in RAM at once."""
        path = self.path(name)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            write(f)
        try:
            os.rename(tmp, path)
        except OSError:
            try:
                os.remove(path)
            except OSError:
                pass
            os.rename(tmp, path)
        self.writes += 1

    def load(self, name, default=None):
        path = self.path(name)
        for p in (path, path + ".tmp"):
            try:
                with open(p) as f:
                    return json.load(f)
            except (OSError, ValueError):
                continue
        return default


class AlertQueue:
    """Alerts and health waiting for the uplink, kept on flash until acknowledged.

    Bounded: beyond ``max_items`` the oldest *health* entries are dropped first; alerts
    are dropped only when the queue holds nothing else (counted in ``dropped``).
    """

    def __init__(self, store, name="queue.json", max_items=64):
        self.store = store
        self.name = name
        self.max_items = max_items
        self.items = store.load(name, []) or []
        self.dropped = 0

    def __len__(self):
        return len(self.items)

    def put(self, item):
        self.items.append(item)
        while len(self.items) > self.max_items:
            victim = 0
            for i in range(len(self.items)):
                if self.items[i].get("kind") == "health":
                    victim = i
                    break
            self.items.pop(victim)
            self.dropped += 1
        self.store.save(self.name, self.items)

    def head(self):
        return self.items[0] if self.items else None

    def pop(self):
        self.items.pop(0)
        self.store.save(self.name, self.items)
