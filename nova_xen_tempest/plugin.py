"""Entry point of the nova-xen tempest plugin (tempest.test_plugins)."""

import os

from tempest.test_discover import plugins

from nova_xen_tempest import config as xen_config


class NovaXenTempestPlugin(plugins.TempestPlugin):

    def load_tests(self):
        base_path = os.path.split(os.path.dirname(
            os.path.abspath(__file__)))[0]
        test_dir = os.path.join('nova_xen_tempest', 'tests')
        return os.path.join(base_path, test_dir), base_path

    def register_opts(self, conf):
        conf.register_group(xen_config.xenapi_group)
        conf.register_opts(xen_config.XenapiGroup,
                           group=xen_config.xenapi_group)

    def get_opt_lists(self):
        return [(xen_config.xenapi_group.name, xen_config.XenapiGroup)]
