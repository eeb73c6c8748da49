"""Sessions: login, logout, pool slaves, xapi restarts and master changes."""

import XenAPI

from tests.xapisim.base import SimTestCase


class SessionTest(SimTestCase):

    def raw_login(self, password=None, url=None, originator='raw-test'):
        return self.raw_call('session.login_with_password',
                             self.world['username'],
                             password or self.world['password'], '2.21',
                             originator, url=url)

    def test_login_with_password(self):
        result = self.raw_login()
        self.assertEqual('Success', result['Status'], result)
        session = result['Value']
        self.assertTrue(session.startswith('OpaqueRef:'), session)
        self.assertEqual('Success', self.raw_call('pool.get_all',
                                                  session)['Status'])
        self.raw_call('session.logout', session)

    def test_wrong_password(self):
        result = self.raw_login(password='not-the-password')
        self.assertEqual('Failure', result['Status'], result)
        details = result['ErrorDescription']
        self.assertEqual(['SESSION_AUTHENTICATION_FAILED',
                          self.world['username']], details[:2])
        with self.assertRaises(XenAPI.Failure) as ctx:
            self.login(password='not-the-password')
        self.assertEqual('SESSION_AUTHENTICATION_FAILED',
                         ctx.exception.details[0])
        result = self.raw_call('session.login_with_password', 'nobody',
                               self.world['password'])
        self.assertEqual(['SESSION_AUTHENTICATION_FAILED', 'nobody'],
                         result['ErrorDescription'][:2])

    def test_logout_ends_the_session(self):
        session = self.raw_login()['Value']
        self.assertEqual({'Status': 'Success', 'Value': ''},
                         self.raw_call('session.logout', session))
        result = self.raw_call('VM.get_all', session)
        self.assertEqual({'Status': 'Failure',
                          'ErrorDescription': ['SESSION_INVALID', session]},
                         result)
        self.assertFailure(['HANDLE_INVALID', 'session', session],
                           self.x.session.get_record, session)

    def test_session_record(self):
        session = self.raw_login(originator='nova-compute')['Value']
        self.addCleanup(self.raw_call, 'session.logout', session)
        record = self.x.session.get_record(session)
        self.assertEqual('nova-compute', record['originator'])
        self.assertEqual(self.world['username'], record['auth_user_name'])
        master = self.x.pool.get_master(self.pool_ref())
        self.assertEqual(master, record['this_host'])
        self.assertIs(True, record['is_local_superuser'])
        self.assertEqual('nova-compute',
                         self.x.session.get_originator(session))
        own = self.x.session.get_record(self.session._session)
        self.assertEqual('xapisim-tests', own['originator'])

    def test_sessions_are_independent(self):
        a = self.raw_login()['Value']
        b = self.raw_login()['Value']
        self.assertNotEqual(a, b)
        self.raw_call('session.logout', a)
        self.assertEqual('Success', self.raw_call('VM.get_all', b)['Status'])
        self.raw_call('session.logout', b)


class RestartTest(SimTestCase):

    def test_restart_kills_every_session(self):
        raw = self.raw_call('session.login_with_password',
                            self.world['username'],
                            self.world['password'])['Value']
        other = self.login()
        old = other._session
        self.control().restart_xapi()
        for session in (raw, old):
            self.assertEqual(['SESSION_INVALID', session],
                             self.raw_call('VM.get_all',
                                           session)['ErrorDescription'])
        self.assertFailure(['HANDLE_INVALID', 'session', raw],
                           self.x.session.get_record, raw)

    def test_xenapi_client_logs_in_again_after_a_restart(self):
        other = self.login()
        before = other._session
        pools = other.xenapi.pool.get_all()
        self.control().restart_xapi()
        self.assertEqual(pools, other.xenapi.pool.get_all())
        self.assertNotEqual(before, other._session)
        self.assertEqual('Success', self.raw_call(
            'pool.get_all', other._session)['Status'])


class PoolSlaveTest(SimTestCase):
    hosts = 2

    def setUp(self):
        super(PoolSlaveTest, self).setUp()
        pool = self.world['pools'][0]
        self.first, self.second = pool['hosts']
        self.assertEqual(self.first['url'], self.master_url)

    def test_slave_refuses_login(self):
        result = self.raw_call('session.login_with_password',
                               self.world['username'], self.world['password'],
                               url=self.second['url'])
        self.assertEqual(['HOST_IS_SLAVE', self.first['address']],
                         result['ErrorDescription'])
        with self.assertRaises(XenAPI.Failure) as ctx:
            self.login(url=self.second['url'])
        self.assertEqual(['HOST_IS_SLAVE', self.first['address']],
                         ctx.exception.details)

    def test_slave_refuses_ordinary_calls(self):
        session = self.session._session
        for method, args in (('VM.get_all', ()),
                             ('pool.get_all', ()),
                             ('host.get_record', (self.x.host.get_all()[0],))):
            result = self.raw_call(method, session, *args,
                                   url=self.second['url'])
            self.assertEqual(['HOST_IS_SLAVE', self.first['address']],
                             result['ErrorDescription'])
        # the session itself is still good on the master
        self.assertEqual('Success',
                         self.raw_call('VM.get_all', session)['Status'])

    def test_move_master(self):
        control = self.control()
        self.addCleanup(control.move_master, self.first['uuid'])
        control.move_master(self.second['uuid'])
        result = self.raw_call('session.login_with_password',
                               self.world['username'], self.world['password'],
                               url=self.first['url'])
        self.assertEqual(['HOST_IS_SLAVE', self.second['address']],
                         result['ErrorDescription'])
        moved = self.login(url=self.second['url'])
        x = moved.xenapi
        new_master = x.host.get_by_uuid(self.second['uuid'])
        self.assertEqual(new_master, x.pool.get_master(x.pool.get_all()[0]))
        # sessions from before the move are gone
        self.assertEqual(['SESSION_INVALID', self.session._session],
                         self.raw_call('VM.get_all', self.session._session,
                                       url=self.second['url'])
                         ['ErrorDescription'])
        # and a session of the new master is refused by the old one
        result = self.raw_call('VM.get_all', moved._session,
                               url=self.first['url'])
        self.assertEqual(['HOST_IS_SLAVE', self.second['address']],
                         result['ErrorDescription'])
