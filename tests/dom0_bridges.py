"""Bridges of a simulated dom0 that xapi did not make (xapisim's
``--dom0-bridges``: a directory each in the dom0's ``sys/class/net``)."""

import os


def set_present(test, x, bridge, present=True, host=None):
    """Make (or take away) ``bridge`` in the dom0 of ``host`` (default:
    the pool's first host), as ovn-controller would; undone at
    ``test``'s clean-up.  ``x``: a XenAPI session's ``xenapi``."""
    host = host or x.host.get_all()[0]
    path = os.path.join(x.host.get_other_config(host)['xapisim_dom0_root'],
                        'sys', 'class', 'net', bridge)
    if present:
        os.makedirs(path)
        test.addCleanup(os.rmdir, path)
    else:
        os.rmdir(path)
        test.addCleanup(os.makedirs, path)
