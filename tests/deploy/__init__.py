"""Whole-system tests of how KernKoa is served: setup.sh with uWSGI, nginx and Redis,
``make run``, uWSGI alone and ``kernkoa serve``."""
