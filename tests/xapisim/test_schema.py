"""The simulator's schema is xapi's datamodel, and it is enforced."""

import json
import os
import re
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
                  'message', 'SDN_controller', 'VTPM')


def datamodel_dir():
    """Where xapi's datamodel lies: $XAPI_DATAMODEL_DIR or ../shared/xapi."""
    for candidate in (os.environ.get('XAPI_DATAMODEL_DIR'),
                      os.path.join(os.path.dirname(ROOT), 'shared', 'xapi')):
        if candidate and os.path.exists(os.path.join(candidate,
                                                     'xenapi.json')):
            return candidate
    return None


def overlay_entries():
    """{'fields': {class: names}, 'messages': {class: names}} the shipped
    overlays add to the datamodel."""
    added = {'fields': {}, 'messages': {}}
    for path in schema_mod.overlay_paths():
        with open(path) as fh:
            overlay = json.load(fh)
        for cname, cdata in overlay.get('classes', {}).items():
            for kind in ('fields', 'messages'):
                added[kind].setdefault(cname, set()).update(
                    cdata.get(kind, {}))
    return added


class OverlaysCiteTheirSource(unittest.TestCase):
    def test_every_overlay_entry_says_where_it_was_read_and_since_when(self):
        for path in schema_mod.overlay_paths():
            with open(path) as fh:
                overlay = json.load(fh)
            for name, enum in overlay.get('enums', {}).items():
                self.assertTrue(enum.get('source'), name)
            for cname, cdata in overlay.get('classes', {}).items():
                for kind in ('fields', 'messages'):
                    for name, entry in cdata.get(kind, {}).items():
                        where = '%s %s.%s' % (os.path.basename(path), cname,
                                              name)
                        self.assertTrue(entry.get('source'), where)
                        self.assertTrue(entry.get('since'), where)

    def test_the_overlays_are_in_the_loaded_schema(self):
        schema = schema_mod.load()
        added = overlay_entries()
        for cname, names in added['fields'].items():
            self.assertLessEqual(names, set(schema.classes[cname].fields))
        for cname, names in added['messages'].items():
            self.assertLessEqual(names, set(schema.classes[cname].messages))

    def test_an_entry_the_datamodel_has_is_refused(self):
        data = {'enums': {'e': ['a']}, 'classes': {'C': {
            'fields': {'f': {}}, 'messages': {'m': {}}}}}
        for overlay in ({'enums': {'e': {'values': ['a']}}},
                        {'classes': {'C': {'fields': {'f': {}}}}},
                        {'classes': {'C': {'messages': {'m': {}}}}}):
            self.assertRaises(ValueError, schema_mod.merge_overlay, data,
                              overlay)


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
        added = overlay_entries()
        self.assertEqual(set(datamodel), set(schema.classes))
        for name, cls in datamodel.items():
            mine = schema.classes[name]
            # the overlays add what xapi made after this datamodel
            extra = added['fields'].get(name, set())
            self.assertEqual(set(f['name'] for f in cls['fields']),
                             set(mine.fields) - extra, name)
            for mname in added['messages'].get(name, ()):
                self.assertNotIn(mname, [m['name'] for m in cls['messages']],
                                 'the datamodel has %s.%s now: drop it from '
                                 'the overlay' % (name, mname))
            for f in cls['fields']:
                where = '%s.%s' % (name, f['name'])
                # the parsed type prints back exactly as the datamodel
                # spelled it: a misread type string cannot hide
                self.assertEqual(f['type'], mine.fields[f['name']].type.name,
                                 where)
                self.assertEqual(f['qualifier'],
                                 mine.fields[f['name']].qualifier, where)
            for m in cls['messages']:
                where = '%s.%s' % (name, m['name'])
                msg = mine.messages[m['name']]
                self.assertEqual([(p['type'], p['name']) for p in m['params']],
                                 [(p[1].name, p[0]) for p in msg.params],
                                 where)
                self.assertEqual(m['result'][0], msg.result.name, where)

    def test_only_the_datamodels_words_are_untyped(self):
        schema = schema_mod.load()
        for text in schema_mod.DESCRIBED_TYPES:
            self.assertEqual(text, schema.type(text).name)
        for bad in ('(string -> string map', 'string sett', 'enum',
                    'no_such_class record', 'VM reference', ''):
            with self.assertRaises((ValueError, KeyError, AssertionError),
                                   msg=bad):
                schema_mod.Schema({'source': '', 'enums': {}, 'errors': {},
                                   'classes': {}}).type(bad)


def load_overlay():
    with open(schema_mod.OVERLAY_PATH) as fh:
        return json.load(fh)


class OverlayCitesXapi(unittest.TestCase):
    """The calls and fields xapi added after the shipped datamodel come
    from xapi's OCaml datamodel, each saying where it was read."""

    def entries(self):
        overlay = load_overlay()
        for name, enum in overlay['enums'].items():
            yield 'enum ' + name, enum
        for cname, cls in overlay['classes'].items():
            for kind in ('fields', 'messages'):
                for name, entry in cls.get(kind, {}).items():
                    yield '%s.%s' % (cname, name), entry

    def test_every_entry_names_its_xapi_source(self):
        overlay = load_overlay()
        commits = overlay['sources']
        for where, entry in self.entries():
            source = entry['source']
            if entry.get('implicit'):
                self.assertIn('xapi generates', source, where)
                continue
            tag = source.split()[0]
            self.assertIn(tag, commits, where)
            self.assertRegex(commits[tag], r' [0-9a-f]{40} ', where)
            self.assertRegex(source, r'ocaml/idl/datamodel\w*\.ml l\.\d+',
                             where)

    def test_the_needed_calls_are_served_with_xapis_types(self):
        schema = schema_mod.load()
        pool = schema.classes['pool'].messages
        readiness = pool['get_guest_secureboot_readiness']
        self.assertEqual(['ready', 'ready_no_dbx', 'not_ready'],
                         readiness.result.values)
        vm = schema.classes['VM']
        self.assertEqual('enum vm_uefi_mode',
                         vm.messages['set_uefi_mode'].params[2][1].name)
        self.assertIn('first_boot', vm.messages['get_secureboot_readiness']
                      .result.values)
        self.assertEqual('ok', vm.fields['secureboot_certificates_state']
                         .initial())
        self.assertEqual([('session_id', 'session ref'), ('self', 'VTPM ref'),
                          ('contents', 'string')],
                         [(n, t.name) for n, t in schema.classes['VTPM']
                          .messages['set_contents'].params])

    def test_an_entry_the_datamodel_already_has_is_refused(self):
        with open(os.path.join(ROOT, 'xapisim', 'data', 'schema.json')) as fh:
            data = json.load(fh)
        stale = {'classes': {'VM': {'messages': {'set_NVRAM': {
            'params': [], 'result': 'void'}}}}}
        with self.assertRaises(ValueError):
            schema_mod.merge_overlay(data, stale)
        with self.assertRaises(ValueError):
            schema_mod.merge_overlay(data, {'enums': {'vm_power_state': {
                'values': ['Halted']}}})


class ReadmeListsWhatIsNotImplemented(unittest.TestCase):
    """The README's NOT_IMPLEMENTED list is what the simulator does."""

    def not_implemented(self):
        import xapisim.world  # noqa: F401  (registers the handlers)
        from xapisim.api import implicit
        from xapisim.rpc import HANDLERS
        schema = schema_mod.load()
        missing = {}
        for cname, cls in schema.classes.items():
            for mname, msg in cls.messages.items():
                if (cname, mname) in HANDLERS:
                    continue
                if msg.implicit and implicit.handler_for(msg) is not None:
                    continue
                missing.setdefault(cname, set()).add(mname)
        return schema, missing

    def readme_list(self, schema):
        with open(os.path.join(ROOT, 'README.md')) as fh:
            text = fh.read()
        section = text[text.index('## xapisim, the simulated pool'):]
        block = section[section.index('`NOT_IMPLEMENTED [<class>.<message>]`'):
                        section.index('The explicit messages of the other')]
        block = block[block.index('those are:'):]
        listed = {}
        cls = None
        all_but = False
        for match in re.finditer(r'`([\w.]+)`(:?)|all but|none', block):
            if match.group(0) == 'none':
                continue
            if match.group(0) == 'all but':
                all_but = True
            elif match.group(2):
                cls, all_but = match.group(1), False
                listed[cls] = set()
            elif all_but:
                listed[cls].add('-' + match.group(1))
            else:
                listed[cls].add(match.group(1))
        for cls, names in listed.items():
            if any(n.startswith('-') for n in names):
                keep = {n[1:] for n in names}
                listed[cls] = {m for m, msg in schema.classes[cls].messages
                               .items() if not msg.implicit and m not in keep}
        return listed

    def test_the_list_matches(self):
        schema, missing = self.not_implemented()
        listed = self.readme_list(schema)
        self.assertIn('VM', listed)
        for cls in set(DRIVER_CLASSES) | set(listed):
            self.assertEqual(missing.get(cls, set()), listed.get(cls, set()),
                             cls)
        # the other classes: no explicit message is simulated
        for cname, cls in schema.classes.items():
            if cname in DRIVER_CLASSES or cname in listed:
                continue
            explicit = {m for m, msg in cls.messages.items()
                        if not msg.implicit}
            self.assertEqual(explicit, missing.get(cname, set()) & explicit,
                             cname)


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
                 'DOMAIN_EXISTS': {1}, 'VDI_IN_USE': {1, 2},
                 # ExnHelper: DBCache_NotFound (reason, p1, p2)
                 'INTERNAL_ERROR': {1, 3},
                 # Xapi_message.get raises it bare
                 'UUID_INVALID': {0, 2},
                 # Xapi_vtpm.assert_not_restricted: [feature]
                 'FEATURE_RESTRICTED': {1}}
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
