"""prometheus-client's multiprocess directory, decided by our settings (``PROMETHEUS_MULTIPROC_DIR``).

prometheus-client picks its storage once, when ``prometheus_client.values`` is first imported: files
in ``$PROMETHEUS_MULTIPROC_DIR`` if the variable is set then, memory of the one process otherwise.
Our settings decide the directory (the field is the library's own variable, default a per-user
temporary directory), and ``prepare()`` puts it into the environment:

- gunicorn: ``web/gunicorn_conf.py`` calls it in the master, before any worker is forked, so every
  worker inherits it before it imports anything;
- every process that records series imports ``workers.metrics``, which calls it before its own
  import of prometheus-client. The ``celery`` command imports prometheus-client before it loads
  ``tasks.app`` (Flower's plugin does), so ``prepare()`` also switches an already imported library
  over to the files; metrics created before that (Flower's own) stay in that process's memory;
- processes started by these (Celery's prefork children) inherit the variable.

``python -m config.prometheus [--reset]`` prints the directory (``--reset`` empties it first: the
whole system is starting, as in ``make run``; counters of processes that are gone would otherwise
add up forever).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from typing import Any

from config.settings import Settings, get_settings

ENV_VAR = "PROMETHEUS_MULTIPROC_DIR"


def _own_directory(path: str) -> None:
    os.makedirs(path, mode=0o700, exist_ok=True)
    # A shared /tmp: a directory another user made could feed our /metrics, or read it.
    if os.stat(path).st_uid != os.getuid():
        raise SystemExit(f"returnsync: the metrics directory {path} belongs to another user")


def prepare(settings: Settings | None = None) -> str:
    """Create the directory and export it to this process (and those it starts); returns it."""
    path = (settings or get_settings()).prometheus_multiproc_dir
    _own_directory(path)
    os.environ[ENV_VAR] = path
    values: Any = sys.modules.get("prometheus_client.values")
    if values is not None and not getattr(values.ValueClass, "_multiprocess", False):
        # Imported before the variable was set: metrics made from now on use the files (the
        # library reads values.ValueClass each time a metric is made).
        values.ValueClass = values.get_value_class()
    return path


def reset(settings: Settings | None = None) -> str:
    """Empty the directory (only while none of our processes runs) and return it."""
    path = (settings or get_settings()).prometheus_multiproc_dir
    if os.path.isdir(path):
        _own_directory(path)
        shutil.rmtree(path)
    _own_directory(path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m config.prometheus", description=__doc__)
    parser.add_argument("--reset", action="store_true", help="empty the directory first")
    args = parser.parse_args(argv)
    print(reset() if args.reset else prepare())
    return 0


if __name__ == "__main__":
    sys.exit(main())
