"""Whole-system tests with hostile input: generated requests under an audit hook, hostile
bodies and controller shapes, runaway controllers under uWSGI, regular expressions that could
backtrack."""
