"""``spark-serve doctor``: what a bug report needs, each line ok / warn / fail with its fix.

:mod:`.gather` collects the facts (NVML, /proc/meminfo, disk, the Hub, installed
versions, caches, ports, the launcher's state and the resolved plan);
:mod:`.judge` turns them into lines (pure, unit-tested).
"""
