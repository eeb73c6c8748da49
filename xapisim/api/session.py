"""session messages: login and logout."""

import hmac

from xapisim.db import now_datetime
from xapisim.errors import XapiError
from xapisim.rpc import handler
from xapisim.schema import NULL_REF


def open_session(ctx, username, originator=''):
    return ctx.db.create('session', {
        'this_host': ctx.pool.master.ref, 'this_user': NULL_REF,
        'last_active': now_datetime(), 'pool': False,
        'is_local_superuser': True, 'subject': NULL_REF,
        'validation_time': now_datetime(), 'auth_user_sid': '',
        'auth_user_name': username, 'rbac_permissions': [],
        'parent': NULL_REF, 'originator': originator, 'other_config': {},
        'client_certificate': False})


@handler('session', 'login_with_password')
def login_with_password(ctx, uname, pwd, version, originator):
    pool = ctx.pool
    if ctx.host is not pool.master:
        raise XapiError('HOST_IS_SLAVE', pool.master.address)
    opts = pool.options
    user_ok = hmac.compare_digest(uname.encode(), opts.username.encode())
    pwd_ok = hmac.compare_digest(pwd.encode(), opts.password.encode())
    if not (user_ok and pwd_ok):
        raise XapiError('SESSION_AUTHENTICATION_FAILED', uname,
                        'Authentication failure')
    return open_session(ctx, uname, originator)


@handler('session', 'logout')
def logout(ctx):
    if ctx.db.exists('session', ctx.session):
        ctx.db.destroy('session', ctx.session)


@handler('session', 'local_logout')
def local_logout(ctx):
    logout(ctx)


@handler('session', 'change_password')
def change_password(ctx, old_pwd, new_pwd):
    opts = ctx.pool.options
    if not hmac.compare_digest(old_pwd.encode(), opts.password.encode()):
        raise XapiError('SESSION_AUTHENTICATION_FAILED',
                        opts.username, 'Authentication failure')
    opts.password = new_pwd
