#!/usr/bin/env python
# -*- coding: utf-8 -*-
"""The KernKoa README's seven-folder example."""

from kernkoa import *


class urlclass:
    """Methods seven folders down the catalog."""

    def urlmethod(self, params=None):
        """Say hello from seven folders down."""
        return "hello world!!."

    def urlmethod2(self, params=None):
        """Echo every parameter as "key = value" lines."""
        if params is None:
            return "Hello World"
        return "".join(f"{escape(key)} = {escape(value)}<br>" for key, value in params.items())
