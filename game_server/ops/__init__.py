"""Operations: structured logs (written by a thread of their own, so a stalled reader
never holds up the game) and the Prometheus metrics.

Below the shell, storage and the cluster, which report into it: it may import the core
and ``protocol`` only.
"""
