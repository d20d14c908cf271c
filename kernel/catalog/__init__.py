"""The catalog of controllers, without requests: loading files, resolving paths to methods,
what a method exposes and declares, binding rules, and the scanner behind the listings.
Imports neither Flask nor Celery.
"""
