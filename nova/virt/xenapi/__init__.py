"""Makes ``compute_driver = xenapi.XenAPIDriver`` load nova-xen.

nova 34 imports compute drivers from ``nova.virt.<name>``; this shim is the
only file nova-xen installs under ``nova/``.
"""

from nova_xen.driver import XenAPIDriver

__all__ = ['XenAPIDriver']
