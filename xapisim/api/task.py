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
