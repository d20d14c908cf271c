"""Who may call what: the auth layer that decides before a view runs, and the stores and guards
behind ``basic_auth``.
"""
