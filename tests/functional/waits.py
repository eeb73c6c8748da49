"""Waits for states and events that a loaded machine cannot fail.

Nova's functional helpers poll a fixed number of times (10 x 0.5 s for a
server's state, a migration's status or an instance action's event; 40 x
0.5 s for a delete; 10 s for a versioned notification): a guess of how
long an operation takes, which a resize across pools on a busy 2-core
machine can exceed.  Here every such wait polls until its condition holds
or ``WAIT_SECONDS`` have passed: a safety net that fails with the
helper's own message, never the condition itself.
"""

import time

from nova.tests.functional.api import client as api_client

#: how long any wait may take before the test fails (OS_TEST_TIMEOUT,
#: tox's 300 s, still bounds a whole test)
WAIT_SECONDS = 180
POLL = 0.2


def until(condition, what, seconds=WAIT_SECONDS):
    """Poll ``condition`` until it returns something true; that value."""
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError('%s did not happen within %d s'
                                 % (what, seconds))
        time.sleep(POLL)


class PatientWaits(object):
    """Mixed into Nova's _IntegratedTestBase: its waits, with a deadline
    instead of a count of retries."""

    def setUp(self):
        super(PatientWaits, self).setUp()
        notifier = self.notifier
        wait = notifier.wait_for_versioned_notifications

        def patient(event_type, n_events=1, timeout=10.0):
            return wait(event_type, n_events, max(timeout, WAIT_SECONDS))
        notifier.wait_for_versioned_notifications = patient

    def _api(self, api=None):
        return api or getattr(self, 'admin_api', self.api)

    def _wait_for_server_parameter(self, server, expected_params,
                                   max_retries=None, api=None,
                                   wait_for_fault_key=True):
        api = self._api(api)
        wait_for_fault = (wait_for_fault_key and
                          expected_params.get('status') == 'ERROR')
        seen = [server]

        def reached():
            seen[0] = api.get_server(server['id'])
            if all(seen[0][k] == v for k, v in expected_params.items()):
                # Nova sets ERROR before it records the fault
                return not wait_for_fault or 'fault' in seen[0]
            return False
        until(reached, 'server %s reaching %s (it is: status %s, task '
              'state %s)' % (server['id'], expected_params,
                             seen[0].get('status'),
                             seen[0].get('OS-EXT-STS:task_state')))
        return seen[0]

    def _wait_for_state_change(self, server, expected_status,
                               max_retries=None, wait_for_fault_key=True):
        return self._wait_for_server_parameter(
            server, {'status': expected_status},
            wait_for_fault_key=wait_for_fault_key)

    def _wait_for_migration_status(self, server, expected_statuses):
        api = self._api()
        statuses = [status.lower() for status in expected_statuses]

        def found():
            for migration in api.api_get('/os-migrations').body[
                    'migrations']:
                if migration['instance_uuid'] == server['id'] and \
                        migration['status'].lower() in statuses:
                    return migration
            return None
        return until(found, 'a migration of %s in status %s'
                     % (server['id'], expected_statuses))

    def _wait_for_instance_action_event(self, server, action_name,
                                        event_name, event_result):
        api = self._api()

        def found():
            for action in api.get_instance_actions(server['id']):
                if action['action'] != action_name:
                    continue
                for event in api.get_instance_action_details(
                        server['id'], action['request_id'])['events']:
                    result = event['result']
                    if event['event'] == event_name and result is not None \
                            and result.lower() == event_result.lower():
                        return event
            return None
        return until(found, 'event %s of action %s with result %s'
                     % (event_name, action_name, event_result))

    def _wait_until_deleted(self, server):
        initially_in_error = server.get('status') == 'ERROR'

        def gone():
            try:
                current = self.api.get_server(server['id'])
            except api_client.OpenStackApiNotFoundException:
                return True
            if not initially_in_error and current['status'] == 'ERROR':
                raise AssertionError('server %s went to ERROR instead of '
                                     'disappearing' % server['id'])
            return False
        until(gone, 'the deletion of server %s' % server['id'])
