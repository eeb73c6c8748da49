"""The simulator's schema is xapi's datamodel, and it is enforced."""

import json
import os
import unittest

from xapisim import schema as schema_mod
from xapisim.schema import MapType, RecordType, RefType, SetType

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SHIPPED = os.path.join(ROOT, 'xapisim', 'data', 'schema.json')

# The classes a Nova driver touches; each must be in the schema.
DRIVER_CLASSES = ('session', 'pool', 'host', 'host_metrics', 'host_cpu', 'VM',
                  'VM_metrics', 'VM_guest_metrics', 'VDI', 'VBD', 'VIF', 'SR',
                  'PBD', 'network', 'PIF', 'task', 'event', 'console',
                  'message')


def datamodel_dir():
    """Where xapi's datamodel lies: $XAPI_DATAMODEL_DIR or ../shared/xapi."""
    for candidate in (os.environ.get('XAPI_DATAMODEL_DIR'),
                      os.path.join(os.path.dirname(ROOT), 'shared', 'xapi')):
        if candidate and os.path.exists(os.path.join(candidate,
                                                     'xenapi.json')):
            return candidate
    return None


class ShippedSchemaMatchesDatamodel(unittest.TestCase):
    def setUp(self):
        self.dir = datamodel_dir()
        if self.dir is None:
            self.skipTest('xapi datamodel not found: set XAPI_DATAMODEL_DIR '
                          'to the folder holding xenapi.json')

    def test_regenerating_gives_the_shipped_file(self):
        import importlib.util
        spec = importlib.util.spec_from_file_location(
            'gen', os.path.join(ROOT, 'tools', 'gen_xapisim_schema.py'))
        gen = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(gen)
        fresh = gen.dumps(gen.build(os.path.join(self.dir, 'xenapi.json'),
                                    os.path.join(self.dir,
                                                 'error_codes.tsv')))
        with open(SHIPPED) as fh:
            self.assertEqual(fresh, fh.read(),
                             'run tools/gen_xapisim_schema.py again')

    def test_fields_and_messages_agree_with_the_datamodel(self):
        with open(os.path.join(self.dir, 'xenapi.json')) as fh:
            datamodel = {c['name']: c for c in json.load(fh)}
        schema = schema_mod.load()
        for name in DRIVER_CLASSES:
            cls = datamodel[name]
            mine = schema.classes[name]
            for f in cls['fields']:
                self.assertEqual(f['type'], mine.fields[f['name']].type.name
                                 .replace('any', f['type']),
                                 '%s.%s' % (name, f['name']))
                self.assertEqual(f['qualifier'],
                                 mine.fields[f['name']].qualifier)
            for m in cls['messages']:
                msg = mine.messages[m['name']]
                self.assertEqual([p['name'] for p in m['params']],
                                 [p[0] for p in msg.params],
                                 '%s.%s' % (name, m['name']))


class SchemaIsSelfConsistent(unittest.TestCase):
    def setUp(self):
        self.schema = schema_mod.load()

    def test_driver_classes_are_present(self):
        for name in DRIVER_CLASSES:
            self.assertIn(name, self.schema.classes)

    def test_every_reference_names_a_class(self):
        def check(t, where):
            if isinstance(t, RefType):
                self.assertIn(t.cls, self.schema.classes, where)
            elif isinstance(t, SetType):
                check(t.item, where)
            elif isinstance(t, MapType):
                check(t.key, where)
                check(t.value, where)
            elif isinstance(t, RecordType):
                self.assertIn(t.cls, self.schema.classes, where)
        for cname, cls in self.schema.classes.items():
            for fname, field in cls.fields.items():
                check(field.type, '%s.%s' % (cname, fname))
            for mname, msg in cls.messages.items():
                for pname, ptype in msg.params:
                    check(ptype, '%s.%s(%s)' % (cname, mname, pname))

    def test_type_names_round_trip(self):
        # the parsed type prints back as the datamodel spelled it
        vm = self.schema.classes['VM']
        self.assertEqual('(string -> string) map',
                         vm.fields['other_config'].type.name)
        self.assertEqual('VBD ref set', vm.fields['VBDs'].type.name)
        self.assertEqual('enum vm_power_state',
                         vm.fields['power_state'].type.name)

    def test_create_knows_its_required_fields(self):
        vbd = self.schema.classes['VBD'].messages['create']
        self.assertEqual(['VM', 'VDI', 'userdevice', 'bootable', 'mode',
                          'type', 'empty', 'other_config',
                          'qos_algorithm_type', 'qos_algorithm_params'],
                         list(vbd.required_fields))

    def test_error_codes_carry_their_parameters(self):
        self.assertEqual(['vm', 'expected', 'actual'],
                         self.schema.errors['VM_BAD_POWER_STATE'])
        self.assertEqual(['class', 'handle'],
                         self.schema.errors['HANDLE_INVALID'])

    def test_raised_errors_are_xapi_codes_with_the_right_arity(self):
        """Every XapiError the simulator raises names a real xapi error."""
        import ast
        # codes xapi raises that its error table omits, or with another
        # number of parameters than the table says (from xen-api's source)
        extra = {'SESSION_AUTHENTICATION_FAILED': {2}, 'Fault': {1},
                 'SR_BACKEND_FAILURE_79': {3}, 'VDI_MISSING': {2},
                 'MESSAGE_PARAMETER_COUNT_MISMATCH': {3},
                 'VM_IS_TEMPLATE': {2}, 'VM_IS_SNAPSHOT': {2},
                 'REVERT_ONLY_ALLOWED_ON_SNAPSHOT': {0},
                 'DOMAIN_EXISTS': {1}, 'VDI_IN_USE': {1, 2}}
        pkg = os.path.join(ROOT, 'xapisim')
        for dirpath, _, files in os.walk(pkg):
            for fname in files:
                if not fname.endswith('.py'):
                    continue
                path = os.path.join(dirpath, fname)
                with open(path) as fh:
                    tree = ast.parse(fh.read())
                for node in ast.walk(tree):
                    if not (isinstance(node, ast.Call) and
                            getattr(node.func, 'id', None) == 'XapiError'):
                        continue
                    if not node.args or not isinstance(node.args[0],
                                                       ast.Constant):
                        continue
                    if any(isinstance(a, ast.Starred) for a in node.args):
                        continue
                    code = node.args[0].value
                    where = '%s:%d %s' % (fname, node.lineno, code)
                    arity = extra.get(code, {self.schema.error_arity(code)})
                    self.assertNotEqual({None}, arity, 'unknown error ' + where)
                    self.assertIn(len(node.args) - 1, arity, where)
