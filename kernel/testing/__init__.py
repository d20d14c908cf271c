"""KernKoa's test kit: a pytest plugin (``kernkoa_app``, ``kernkoa_client``) and what it
builds on, for testing the controllers of a project.

The plugin (:mod:`kernel.testing.plugin`) is installed with the package and loads
with pytest; this package imports nothing heavy until a fixture is used.
"""
