"""Generic message handling: dispatch errors and the implicit messages."""

import XenAPI

from tests.xapisim.base import MIB, SimTestCase

BOGUS_REF = 'OpaqueRef:00000000-0000-0000-0000-00000000beef'
BOGUS_UUID = '00000000-0000-0000-0000-00000000beef'


class DispatchTest(SimTestCase):
    """What xapi answers to calls it cannot run."""

    def failure(self, method, *params):
        result = self.raw_call(method, *params)
        self.assertEqual('Failure', result['Status'], result)
        return result['ErrorDescription']

    def test_unknown_message(self):
        s = self.session._session
        self.assertEqual(['MESSAGE_METHOD_UNKNOWN', 'VM.frobnicate'],
                         self.failure('VM.frobnicate', s))
        self.assertEqual(['MESSAGE_METHOD_UNKNOWN', 'Frobnicator.get_all'],
                         self.failure('Frobnicator.get_all', s))
        # the Async prefix is not part of the reported name
        self.assertEqual(['MESSAGE_METHOD_UNKNOWN', 'VM.frobnicate'],
                         self.failure('Async.VM.frobnicate', s))
        self.assertFailure(['MESSAGE_METHOD_UNKNOWN', 'VM.frobnicate'],
                           self.x.VM.frobnicate)

    def test_wrong_arity_does_not_count_the_session(self):
        s = self.session._session
        vm = self.new_vm()
        self.assertEqual(['MESSAGE_PARAMETER_COUNT_MISMATCH',
                          'VM.get_name_label', '1', '0'],
                         self.failure('VM.get_name_label', s))
        self.assertEqual(['MESSAGE_PARAMETER_COUNT_MISMATCH',
                          'VM.get_name_label', '1', '2'],
                         self.failure('VM.get_name_label', s, vm, 'extra'))
        self.assertEqual(['MESSAGE_PARAMETER_COUNT_MISMATCH', 'VM.start',
                          '3', '1'],
                         self.failure('VM.start', s, vm))
        self.assertEqual(['MESSAGE_PARAMETER_COUNT_MISMATCH', 'VM.get_all',
                          '0', '-1'],
                         self.failure('VM.get_all'))
        # messages without a session count every parameter
        self.assertEqual(['MESSAGE_PARAMETER_COUNT_MISMATCH',
                          'session.login_with_password', '2', '1'],
                         self.failure('session.login_with_password', 'root'))
        self.assertFailure(['MESSAGE_PARAMETER_COUNT_MISMATCH',
                            'VM.set_name_label', '2', '1'],
                           self.x.VM.set_name_label, vm)

    def test_optional_trailing_parameters(self):
        result = self.raw_call('session.login_with_password',
                               self.world['username'], self.world['password'])
        self.assertEqual('Success', result['Status'], result)
        session = result['Value']
        self.assertEqual('', self.x.session.get_originator(session))
        self.raw_call('session.logout', session)
        self.assertEqual(['MESSAGE_PARAMETER_COUNT_MISMATCH',
                          'session.login_with_password', '2', '5'],
                         self.failure('session.login_with_password', 'root',
                                      'pw', '1.0', 'o', 'extra'))
        vdi = self.new_vdi(size=4 * MIB)
        copy = self.x.VDI.copy(vdi, self.default_sr())
        self.destroy_later('VDI', copy)
        self.assertNotEqual(vdi, copy)
        self.assertEqual(str(4 * MIB), self.x.VDI.get_virtual_size(copy))
        self.assertFailure(['MESSAGE_PARAMETER_COUNT_MISMATCH', 'VDI.copy',
                            '2', '1'], self.x.VDI.copy, vdi)

    def test_wrong_parameter_type_is_an_internal_error(self):
        vm = self.new_vm()
        for args in ((42, 'x'), (vm, ['a list']), (vm, {'a': 'map'})):
            details = self.assertFailure('INTERNAL_ERROR',
                                         self.x.VM.set_name_label, *args)
            self.assertEqual(2, len(details), details)
        self.assertFailure('INTERNAL_ERROR', self.x.VM.set_VCPUs_max, vm,
                           'many')
        self.assertFailure('INTERNAL_ERROR', self.x.VM.set_is_a_template, vm,
                           17)
        self.assertEqual('test-vm', self.x.VM.get_name_label(vm))

    def test_bad_reference(self):
        vm = self.new_vm()
        self.assertFailure(['HANDLE_INVALID', 'VM', BOGUS_REF],
                           self.x.VM.get_record, BOGUS_REF)
        self.assertFailure(['HANDLE_INVALID', 'VM', BOGUS_REF],
                           self.x.VM.set_name_label, BOGUS_REF, 'x')
        # a live reference of another class is no VM
        sr = self.default_sr()
        self.assertFailure(['HANDLE_INVALID', 'VM', sr],
                           self.x.VM.get_name_label, sr)
        # references inside a create struct are checked too
        vdi = self.new_vdi()
        self.assertFailure(['HANDLE_INVALID', 'VDI', BOGUS_REF],
                           self.new_vbd, vm, BOGUS_REF)
        self.assertFailure(['HANDLE_INVALID', 'VM', BOGUS_REF],
                           self.new_vbd, BOGUS_REF, vdi)

    def test_bad_uuid(self):
        vm = self.new_vm()
        self.assertFailure(['UUID_INVALID', 'VM', BOGUS_UUID],
                           self.x.VM.get_by_uuid, BOGUS_UUID)
        sr_uuid = self.x.SR.get_uuid(self.default_sr())
        self.assertFailure(['UUID_INVALID', 'VM', sr_uuid],
                           self.x.VM.get_by_uuid, sr_uuid)
        self.assertEqual(vm, self.x.VM.get_by_uuid(self.x.VM.get_uuid(vm)))

    def test_create_without_a_required_field(self):
        record = {'SR': self.default_sr(), 'virtual_size': str(MIB),
                  'type': 'user', 'sharable': False, 'read_only': False}
        before = set(self.x.VDI.get_all())
        details = self.assertFailure('INTERNAL_ERROR', self.x.VDI.create,
                                     record)
        self.assertIn('other_config', details[1])
        self.assertEqual(before, set(self.x.VDI.get_all()))
        vm = self.new_vm()
        details = self.assertFailure('INTERNAL_ERROR', self.x.VBD.create, {
            'VM': vm, 'VDI': 'OpaqueRef:NULL', 'userdevice': '3',
            'bootable': False, 'mode': 'RO', 'type': 'CD', 'empty': True,
            'other_config': {}, 'qos_algorithm_type': ''})
        self.assertIn('qos_algorithm_params', details[1])
        self.assertEqual([], self.x.VM.get_VBDs(vm))

    def test_create_ignores_unknown_keys(self):
        vdi = self.new_vdi(name_label='extra', no_such_field='whatever',
                           another={'x': 'y'})
        self.assertEqual('extra', self.x.VDI.get_name_label(vdi))
        self.assertNotIn('no_such_field', self.x.VDI.get_record(vdi))

    def test_no_setter_for_a_read_only_field(self):
        vm = self.new_vm()
        for method in ('VM.set_power_state', 'VM.set_uuid',
                       'VM.set_resident_on', 'VDI.set_SR'):
            self.assertEqual(['MESSAGE_METHOD_UNKNOWN', method],
                             self.failure(method, self.session._session, vm,
                                          'x'))
        self.assertEqual('Halted', self.x.VM.get_power_state(vm))

    # -- the order of the checks -------------------------------------------

    def test_name_is_checked_before_arity(self):
        self.assertEqual(['MESSAGE_METHOD_UNKNOWN', 'VM.nope'],
                         self.failure('VM.nope'))

    def test_arity_is_checked_before_types_and_session(self):
        self.assertEqual(['MESSAGE_PARAMETER_COUNT_MISMATCH',
                          'VM.get_name_label', '1', '2'],
                         self.failure('VM.get_name_label', BOGUS_REF, 42, 43))

    def test_types_are_checked_before_the_session(self):
        details = self.failure('VM.set_name_label', BOGUS_REF, BOGUS_REF, 42)
        self.assertEqual('INTERNAL_ERROR', details[0], details)

    def test_session_is_checked_before_references(self):
        self.assertEqual(['SESSION_INVALID', BOGUS_REF],
                         self.failure('VM.get_record', BOGUS_REF, BOGUS_REF))
        self.assertEqual(['SESSION_INVALID', BOGUS_REF],
                         self.failure('VDI.create', BOGUS_REF, {}))

    def test_async_refusal_comes_after_the_session_check(self):
        self.assertEqual(['SESSION_INVALID', BOGUS_REF],
                         self.failure('Async.VM.get_record', BOGUS_REF,
                                      BOGUS_REF))


class ImplicitMessagesTest(SimTestCase):
    """The getters, setters and collection mutators of every class."""

    def test_get_record_has_every_field(self):
        vm = self.new_vm(name='rec')
        record = self.x.VM.get_record(vm)
        self.assertEqual('rec', record['name_label'])
        for field in ('uuid', 'power_state', 'VBDs', 'other_config',
                      'memory_static_max', 'resident_on', 'tags'):
            self.assertIn(field, record)
        self.assertEqual(record['uuid'], self.x.VM.get_uuid(vm))
        self.assertEqual(record['name_label'], self.x.VM.get_name_label(vm))

    def test_get_all_and_get_all_records(self):
        vm = self.new_vm(name='all')
        self.assertIn(vm, self.x.VM.get_all())
        records = self.x.VM.get_all_records()
        self.assertEqual(set(self.x.VM.get_all()), set(records))
        self.assertEqual(self.x.VM.get_record(vm), records[vm])
        self.x.VM.destroy(vm)
        self.assertNotIn(vm, self.x.VM.get_all())
        self.assertNotIn(vm, self.x.VM.get_all_records())

    def test_get_by_uuid_and_name_label(self):
        a = self.new_vm(name='twin')
        b = self.new_vm(name='twin')
        self.assertEqual(a, self.x.VM.get_by_uuid(self.x.VM.get_uuid(a)))
        self.assertEqual({a, b}, set(self.x.VM.get_by_name_label('twin')))
        self.assertEqual([], self.x.VM.get_by_name_label('nobody-has-this'))

    def test_get_and_set_field(self):
        vm = self.new_vm()
        self.x.VM.set_name_description(vm, 'described')
        self.assertEqual('described', self.x.VM.get_name_description(vm))
        self.x.VM.set_other_config(vm, {'a': '1', 'b': '2'})
        self.assertEqual({'a': '1', 'b': '2'}, self.x.VM.get_other_config(vm))
        self.x.VM.set_memory_static_max(vm, str(512 * MIB))
        self.assertEqual(str(512 * MIB),
                         self.x.VM.get_record(vm)['memory_static_max'])

    def test_map_add_and_remove(self):
        vm = self.new_vm()
        self.x.VM.add_to_other_config(vm, 'k', 'v')
        self.assertEqual('v', self.x.VM.get_other_config(vm)['k'])
        # even the same value again is a duplicate
        for value in ('v', 'other'):
            self.assertFailure(['MAP_DUPLICATE_KEY', 'VM', 'other_config', vm,
                                'k'], self.x.VM.add_to_other_config, vm, 'k',
                               value)
        self.assertEqual('v', self.x.VM.get_other_config(vm)['k'])
        self.x.VM.remove_from_other_config(vm, 'k')
        self.assertNotIn('k', self.x.VM.get_other_config(vm))
        before = self.x.VM.get_other_config(vm)
        self.x.VM.remove_from_other_config(vm, 'not-there')
        self.assertEqual(before, self.x.VM.get_other_config(vm))
        self.x.VM.add_to_other_config(vm, 'k', 'again')
        self.assertEqual('again', self.x.VM.get_other_config(vm)['k'])

    def test_set_add_and_remove(self):
        vm = self.new_vm()
        self.assertEqual([], self.x.VM.get_tags(vm))
        self.x.VM.add_tags(vm, 'red')
        self.x.VM.add_tags(vm, 'blue')
        self.x.VM.add_tags(vm, 'red')
        self.assertEqual(['blue', 'red'], sorted(self.x.VM.get_tags(vm)))
        self.x.VM.remove_tags(vm, 'red')
        self.x.VM.remove_tags(vm, 'green')
        self.assertEqual(['blue'], self.x.VM.get_tags(vm))

    def test_create_and_destroy(self):
        vm = self.new_vm(name='short-lived')
        uuid = self.x.VM.get_uuid(vm)
        self.x.VM.destroy(vm)
        self.assertFailure(['HANDLE_INVALID', 'VM', vm], self.x.VM.get_record,
                           vm)
        self.assertFailure(['UUID_INVALID', 'VM', uuid], self.x.VM.get_by_uuid,
                           uuid)
        self.assertFailure(['HANDLE_INVALID', 'VM', vm], self.x.VM.destroy, vm)

    def test_generic_create_of_a_plain_class(self):
        network = self.x.network.create({'name_label': 'plain',
                                         'name_description': '', 'MTU': '1500',
                                         'other_config': {}})
        self.assertIn(network, self.x.network.get_by_name_label('plain'))
        self.assertEqual('1500', self.x.network.get_MTU(network))
        self.x.network.destroy(network)
        self.assertEqual([], self.x.network.get_by_name_label('plain'))

    # -- get_all_records_where ---------------------------------------------

    def where(self, expr):
        found = self.x.VM.get_all_records_where(expr)
        self.assertEqual(set(found), set(self.x.VM.get_all_where(expr)))
        return set(found)

    def test_where_field_equality(self):
        a = self.new_vm(name='where-a')
        b = self.new_vm(name='where-b')
        found = self.x.VM.get_all_records_where('field "name__label"="where-a"')
        self.assertEqual([a], list(found))
        self.assertEqual(self.x.VM.get_record(a), found[a])
        self.assertEqual([b], self.x.VM.get_all_where(
            'field "name__label" = "where-b"'))
        self.assertEqual({a}, self.where(
            'field "uuid" = "%s"' % self.x.VM.get_uuid(a)))
        self.assertEqual(set(), self.where('field "name__label" = "nobody"'))

    def test_where_booleans_and_refs_compare_as_stored_strings(self):
        a = self.new_vm(name='where-bool')
        self.x.VM.set_is_a_template(a, True)
        found = self.where('field "is_a_template" = "true"')
        self.assertIn(a, found)
        self.assertNotIn(a, self.where('field "is_a_template" = "false"'))
        self.assertIn(a, self.where('field "affinity" = "OpaqueRef:NULL"'))
        self.assertIn(a, self.where('field "power_state" = "Halted"'))
        self.assertIn(a, self.where('field "user_version" = "1"'))

    def test_where_and_or_not_parentheses(self):
        a = self.new_vm(name='logic-a', user_version='1')
        b = self.new_vm(name='logic-b', user_version='2')
        c = self.new_vm(name='logic-c', user_version='2')
        mine = {a, b, c}

        def w(expr):
            return self.where(expr) & mine

        self.assertEqual({b}, w('field "name__label" = "logic-b" and '
                                'field "user_version" = "2"'))
        self.assertEqual({a, c}, w('field "name__label" = "logic-a" or '
                                   'field "name__label" = "logic-c"'))
        self.assertEqual({a}, w('field "name__label" = "logic-a" and '
                                'not (field "user_version" = "2")'))
        self.assertEqual({c}, w('(field "name__label" = "logic-b" or '
                                'field "name__label" = "logic-c") and '
                                'not (field "name__label" = "logic-b")'))
        self.assertEqual(mine, w('true'))
        self.assertEqual(set(), w('false'))
        self.assertEqual(set(), w('not true'))
        self.assertEqual(mine, w('"x" = "x"'))
        # and / or share one precedence and group from the left
        self.assertEqual(set(), w('true or false and false'))
        self.assertEqual(mine, w('false and false or true'))
        # not reaches as far right as it can
        self.assertEqual(mine, w('not false and false'))
        self.assertEqual(set(), w('(not false) and false'))

    def test_where_names_database_columns(self):
        vm = self.new_vm(name='columns', memory_mib=300, vcpus=2)
        mib = str(300 * 1024 * 1024)
        # namespaced fields: "<namespace>__<field>"
        for expr in ('field "name__label" = "columns"',
                     'field "memory__static_max" = "%s"' % mib,
                     'field "VCPUs__max" = "2"',
                     'field "actions__after_crash" = "destroy"',
                     'field "HVM__boot_policy" = "BIOS order"',
                     'field "PV__bootloader" = ""',
                     'field "_ref" = "%s"' % vm):
            self.assertIn(vm, self.where(expr), expr)
        # sets and maps compare as the S-expressions xapi stores
        self.x.VM.set_tags(vm, ['a', "it's"])
        self.x.VM.set_other_config(vm, {'k': 'v'})
        self.assertIn(vm, self.where(r'''field "tags" = "('a' 'it\'s')"'''))
        self.assertIn(vm, self.where('field "other_config" = "((\'k\' \'v\'))"'))
        self.assertIn(vm, self.where('field "blocked_operations" = "()"'))

    def test_where_fields_the_driver_uses(self):
        # nova_xen: rescue.py, host.py, network.py
        vm = self.new_vm(name='inst-1-rescue')
        self.x.VM.start(vm, False, False)
        self.addCleanup(self.x.VM.hard_shutdown, vm)
        host = self.x.VM.get_resident_on(vm)
        self.assertEqual([vm], list(self.x.VM.get_all_records_where(
            'field "name__label" = "inst-1-rescue"')))
        self.assertIn(vm, self.x.VM.get_all_records_where(
            'field "resident_on" = "%s"' % host))
        self.assertEqual([self.pool_network()],
                         list(self.x.network.get_all_records_where(
                             'field "bridge" = "xenbr0"')))

    def test_where_an_unknown_field_fails_as_xapis_database(self):
        self.new_vm()
        for name in ('name_label', 'memory_static_max', 'no_such_field',
                     'ref'):
            for fn in (self.x.VM.get_all_records_where,
                       self.x.VM.get_all_where):
                self.assertFailure(
                    ['INTERNAL_ERROR', 'missing field', name, ''], fn,
                    'field "%s" = "x"' % name)
        # a field looked up in no row is never missed
        self.assertEqual(set(), self.where('false and field "nope" = "x"'))
        self.assertTrue(self.where('true or field "nope" = "x"'))
        self.assertEqual({}, self.x.Bond.get_all_records_where(
            'field "nope" = "x"'))

    def test_where_malformed_expressions(self):
        for expr in ('field "name__label" =', 'field name__label = "x"',
                     'field "a" != "b"', 'field "a" <> "b"', '(true',
                     'true and', "field 'name__label' = 'x'", 'TRUE',
                     'field "a" = "b" extra'):
            details = self.assertFailure('INVALID_VALUE',
                                         self.x.VM.get_all_records_where, expr)
            self.assertEqual(3, len(details), details)
            self.assertEqual(expr, details[1])
            self.assertFailure('INVALID_VALUE', self.x.VM.get_all_where, expr)

    # -- back-references ---------------------------------------------------

    def test_back_references_follow_create_and_destroy(self):
        vm = self.new_vm()
        sr = self.default_sr()
        vdi = self.new_vdi()
        self.assertIn(vdi, self.x.SR.get_VDIs(sr))
        vbd = self.new_vbd(vm, vdi)
        self.assertEqual([vbd], self.x.VM.get_VBDs(vm))
        self.assertEqual([vbd], self.x.VDI.get_VBDs(vdi))
        net = self.pool_network()
        vif = self.new_vif(vm, net, mac='00:16:3e:00:00:01')
        self.assertEqual([vif], self.x.VM.get_VIFs(vm))
        self.assertIn(vif, self.x.network.get_VIFs(net))
        self.x.VBD.destroy(vbd)
        self.assertEqual([], self.x.VM.get_VBDs(vm))
        self.assertEqual([], self.x.VDI.get_VBDs(vdi))
        self.x.VIF.destroy(vif)
        self.assertEqual([], self.x.VM.get_VIFs(vm))
        self.assertNotIn(vif, self.x.network.get_VIFs(net))
        self.x.VDI.destroy(vdi)
        self.assertNotIn(vdi, self.x.SR.get_VDIs(sr))

    def test_back_references_follow_changes(self):
        vm = self.new_vm()
        host = self.x.host.get_all()[0]
        self.assertNotIn(vm, self.x.host.get_resident_VMs(host))
        self.x.VM.start(vm, False, False)
        self.assertEqual(host, self.x.VM.get_resident_on(vm))
        self.assertIn(vm, self.x.host.get_resident_VMs(host))
        self.x.VM.hard_shutdown(vm)
        self.assertEqual('OpaqueRef:NULL', self.x.VM.get_resident_on(vm))
        self.assertNotIn(vm, self.x.host.get_resident_VMs(host))

    def test_records_of_other_sessions_agree(self):
        other = self.login().xenapi
        vm = self.new_vm(name='shared')
        self.assertEqual(self.x.VM.get_record(vm), other.VM.get_record(vm))
        with self.assertRaises(XenAPI.Failure):
            other.VM.get_record(BOGUS_REF)
