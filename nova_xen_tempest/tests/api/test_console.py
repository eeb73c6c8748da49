"""os-getConsoleOutput returns the guest's console log, as dom0 has it."""

import time

from tempest import config
from tempest.lib import decorators

from nova_xen_tempest.tests.api import base

CONF = config.CONF


class ConsoleOutputTest(base.XenAPIComputeTest):

    @classmethod
    def skip_checks(cls):
        super(ConsoleOutputTest, cls).skip_checks()
        if not CONF.compute_feature_enabled.console_output:
            raise cls.skipException('[compute-feature-enabled]'
                                    'console_output is off')

    @classmethod
    def resource_setup(cls):
        super(ConsoleOutputTest, cls).resource_setup()
        cls.server = cls.create_active_server()

    def console_output(self, **kwargs):
        """The server's console output, once the guest has written some."""
        deadline = time.time() + self.build_timeout
        while True:
            output = self.servers_client.get_console_output(
                self.server['id'], **kwargs)['output']
            if output.strip() or time.time() > deadline:
                return output
            time.sleep(self.build_interval)

    @decorators.idempotent_id('f8ca8c15-1acb-4771-8e8d-1d5a3a7d1a68')
    def test_console_output_is_the_guests_log(self):
        output = self.console_output()
        self.assertNotEqual('', output.strip(),
                            'the guest wrote nothing to its console within '
                            '%d s' % self.build_timeout)
        # what Nova returned is in the log xenconsoled keeps in dom0
        _, record = self.vm_of(self.server)
        log = self.xapi.dom0_console_log(record)
        lines = [line for line in output.splitlines() if line.strip()]
        self.assertIn(lines[-1], log)

    @decorators.idempotent_id('73f30fd2-ed0e-4b90-b2b2-0f8c067e04fa')
    def test_console_output_length_keeps_the_last_lines(self):
        self.console_output()
        output = self.servers_client.get_console_output(
            self.server['id'], length=3)['output']
        self.assertLessEqual(len(output.splitlines()), 3)
