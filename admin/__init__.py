"""Admin backend: which digital humans exist, what they know and say, and every call.

FastAPI app in :mod:`admin.main`, models in :mod:`admin.models`, Celery tasks in
:mod:`admin.worker`, schema in ``migrations/`` (Alembic).
"""
