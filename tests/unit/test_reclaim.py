"""Deferred steps: retried by each pass of the reclaimer until done."""

import unittest

from nova import exception

from nova_xen import errors
from nova_xen import reclaim


class Flaky(object):
    """A step that fails its first ``failures`` calls."""

    def __init__(self, failures):
        self.failures = failures
        self.calls = 0

    def __call__(self):
        self.calls += 1
        if self.calls <= self.failures:
            raise errors.XenAPIError('VM.set_affinity', ['INTERNAL_ERROR'])


class DeferredTest(unittest.TestCase):

    def setUp(self):
        self.deferred = reclaim.Deferred()

    def test_a_step_that_fails_is_retried_until_it_is_done(self):
        step = Flaky(2)
        self.assertFalse(self.deferred.attempt('k', 'set it', step))
        self.assertEqual([], self.deferred.run())
        self.assertEqual(1, len(self.deferred))
        self.assertEqual([('step', 'set it')], self.deferred.run())
        self.assertEqual(0, len(self.deferred))
        self.assertEqual([], self.deferred.run())
        self.assertEqual(3, step.calls)

    def test_a_step_done_at_once_waits_for_nothing(self):
        step = Flaky(0)
        self.assertTrue(self.deferred.attempt('k', 'set it', step))
        self.assertEqual(0, len(self.deferred))

    def test_the_retry_may_differ_from_the_first_try(self):
        retry = Flaky(0)
        self.deferred.attempt('k', 'set it', Flaky(1), retry=retry)
        self.deferred.run()
        self.assertEqual(1, retry.calls)

    def test_a_new_attempt_replaces_the_waiting_step(self):
        old = Flaky(5)
        self.deferred.attempt('k', 'set it', old)
        self.assertTrue(self.deferred.attempt('k', 'set it', Flaky(0)))
        self.deferred.run()
        self.assertEqual(1, old.calls)
        self.assertEqual(0, len(self.deferred))

    def test_a_step_whose_object_is_gone_is_done(self):
        def gone():
            raise exception.NotFound('no such VM')
        self.assertTrue(self.deferred.attempt('k', 'set it', gone))
        self.deferred.attempt('j', 'set it', Flaky(1), retry=gone)
        self.assertEqual([('step', 'set it')], self.deferred.run())
        self.assertEqual(0, len(self.deferred))
