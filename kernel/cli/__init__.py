"""The ``kernkoa`` command and the programs it runs: the development server, workers and their
supervisor, user management, nginx error pages.
"""
