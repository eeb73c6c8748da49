"""XenAPI failures become Nova exceptions that still say what xapi said."""

import unittest

from nova import exception

from nova_xen import errors


class TranslateTest(unittest.TestCase):

    def test_mapped_code_gets_nova_class_and_explanation(self):
        exc = errors.translate('VM.start', ['HOST_NOT_ENOUGH_FREE_MEMORY',
                                            '1073741824', '536870912'])
        self.assertIsInstance(exc, exception.ComputeResourcesUnavailable)
        self.assertEqual(
            'XenAPI VM.start failed: HOST_NOT_ENOUGH_FREE_MEMORY '
            '[1073741824, 536870912] (the host has not enough free memory '
            '(needed 1073741824 bytes, available 536870912))', str(exc))
        self.assertEqual('HOST_NOT_ENOUGH_FREE_MEMORY', exc.xapi_code)
        self.assertEqual(['1073741824', '536870912'], exc.params)

    def test_bad_power_state_is_invalid_state(self):
        exc = errors.translate('VM.start', ['VM_BAD_POWER_STATE', 'OpaqueRef:1',
                                            'halted', 'running'])
        self.assertIsInstance(exc, exception.InstanceInvalidState)
        self.assertIn('the VM is running, expected halted', str(exc))

    def test_handle_invalid_is_not_found(self):
        exc = errors.translate('VM.get_record', ['HANDLE_INVALID', 'VM',
                                                 'OpaqueRef:x'])
        self.assertIsInstance(exc, exception.NotFound)
        self.assertIn('HANDLE_INVALID [VM, OpaqueRef:x]', str(exc))

    def test_unknown_code_keeps_everything(self):
        exc = errors.translate('SR.scan', ['SR_BACKEND_FAILURE_47', '',
                                           'The SR is not available', ''])
        self.assertIsInstance(exc, errors.XenAPIError)
        self.assertEqual('SR_BACKEND_FAILURE_47', exc.xapi_code)
        self.assertEqual('XenAPI SR.scan failed: SR_BACKEND_FAILURE_47 '
                         '[, The SR is not available, ]', str(exc))

    def test_missing_parameters_do_not_break_the_message(self):
        exc = errors.translate('VM.start', ['HOST_NOT_ENOUGH_FREE_MEMORY'])
        self.assertIn('HOST_NOT_ENOUGH_FREE_MEMORY', str(exc))

    def test_empty_details(self):
        exc = errors.translate('VM.start', [])
        self.assertEqual('UNKNOWN', exc.xapi_code)
