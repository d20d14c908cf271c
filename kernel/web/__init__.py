"""The Flask side of a request: the app class, reading bodies and fields, request limits, the
catch-all view, responses and the error envelope, add-ons.
"""
