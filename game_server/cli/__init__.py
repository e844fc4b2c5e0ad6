"""The command line and the composition root: options and their ``RPS_*`` variables, the
assembly of core, shell, storage and cluster into one application, the serve loop with its
signals, and systemd's notifications.

The top layer: the only package that may import all the others, and the only place that
knows which storage engine or queue a process runs with.
"""
