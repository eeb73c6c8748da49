"""``nova-xen-manage``: the operator's command line of nova-xen.

``manage`` parses the command line, ``pools`` keeps one Nova host
aggregate per XenAPI pool (through Nova's and Placement's APIs), ``check``
runs nova-compute's start-up checks from a shell.
"""
