#!/usr/bin/env python
# -*- coding: utf-8 -*-
"""The KernKoa README's "Fast Hello World" example."""

from kernkoa import *


class fastHelloClass:
    """Hello-world methods, as in the KernKoa README."""

    def fastHelloWorld(self, params=None):
        """Say hello."""
        return "hello world!!."

    def fastHelloWorldWithParameters(self, params=None):
        """Echo every parameter as "key = value" lines."""
        if params == None:
            return "Hello World"
        returnData = ""
        for key, parameter in params.items():
            returnData = returnData + escape(key) + " = " + escape(parameter) + "<br>"
        return returnData
