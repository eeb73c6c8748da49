"""The ``[xenapi]`` group of tempest.conf: how the tests reach xapi.

The nova-xen tests look at the pools behind Nova's back (the VM of a
server, its host, its console log in dom0), as each pool master's XenAPI
client; without ``connection_url`` they are skipped.
"""

from oslo_config import cfg

xenapi_group = cfg.OptGroup(
    name='xenapi',
    title='XenAPI options of the nova-xen tempest plugin',
    help='How the nova-xen tests talk to the pool master (xapi) of the '
         'XCP-ng / XenServer pool that nova-compute manages.')

XenapiGroup = [
    cfg.ListOpt('connection_url',
                help='URL of the pool master, as [xenserver]connection_url '
                     'of nova-compute (e.g. https://xcp-ng-1.example.com); '
                     'when the cloud\'s computes manage hosts of several '
                     'pools, the URL of each pool\'s master, '
                     'comma-separated (the same credentials for all). '
                     'Unset: every nova-xen test is skipped.'),
    cfg.StrOpt('connection_username', default='root',
               help='XenAPI user name.'),
    cfg.StrOpt('connection_password', secret=True,
               help='XenAPI password.'),
    cfg.StrOpt('ca_file',
               help='CA bundle that verifies the pool master\'s TLS '
                    'certificate (default: the system\'s CAs).'),
    cfg.BoolOpt('insecure', default=False,
                help='Do not verify the pool master\'s TLS certificate.'),
]
