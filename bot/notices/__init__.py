"""Benefit notices at run time: the job queue, the delivery jobs, rate limits, the worker, REST/CLI helpers.

The domain (what a notice is, whom it targets, the delivery rows and their state changes) is grid/notices.py
and grid/notice_deliveries.py; this package runs it: queue.py (arq or in-process), jobs.py (plan, deliver,
sweep), ratelimit.py, runtime.py (what jobs need), worker.py (`gridbot worker`), service.py (inside the app).
"""
