"""Device drivers: one module per transport or device family.

A driver turns bytes into events and commands into bytes; it knows no rules. Every driver has a
simulator that speaks the same wire protocol (used by tests and by `linli demo`).
"""
