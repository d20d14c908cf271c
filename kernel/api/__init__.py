"""What controllers get from ``from kernkoa import *`` beside Flask's names: ``load`` and
``dbs``.
"""
