#!/usr/bin/env python3
"""nova-xen's version plugin: which plugin API this dom0 speaks.

host.call_plugin(host, 'nova_xen_version.py', 'get_version',
                 {'params': '{}'}) -> '{"api_version": "1.1"}'
"""

import nova_xen_dom0lib as lib


def get_version(session, params):
    return {'api_version': lib.API_VERSION,
            'plugins': ['nova_xen_version.py']}


if __name__ == '__main__':
    lib.main({'get_version': get_version})
