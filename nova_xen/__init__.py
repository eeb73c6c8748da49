"""nova-xen: an OpenStack Nova compute driver for XCP-ng / XenServer pools."""
