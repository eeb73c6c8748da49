"""task messages."""

from xapisim.rpc import handler


@handler('task', 'create')
def task_create(ctx, label, description):
    return ctx.pool.tasks.create(ctx.host, ctx.session, label, description,
                                 cancellable=False)


@handler('task', 'cancel')
def task_cancel(ctx, task):
    ctx.pool.tasks.cancel(task)


@handler('task', 'destroy')
def task_destroy(ctx, task):
    ctx.pool.tasks.destroy(task)


@handler('task', 'set_status')
def task_set_status(ctx, task, value):
    ctx.pool.tasks.set_status(task, value)


@handler('task', 'set_progress')
def task_set_progress(ctx, task, value):
    ctx.db.set('task', task, progress=value)


@handler('task', 'set_result')
def task_set_result(ctx, task, value):
    ctx.db.set('task', task, result=value)


@handler('task', 'set_error_info')
def task_set_error_info(ctx, task, value):
    ctx.db.set('task', task, error_info=value)
