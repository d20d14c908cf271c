"""The bottom layer: the exception root, typed settings, lazy imports, file containment and the
secret-key check. Imports neither Flask nor Celery.
"""
