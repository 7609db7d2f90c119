"""The decisions: access control, alarm panel, patrol tours, parking policy, automation rules.

Pure logic over events and state; imports nothing of edge/drivers/vision but the event model.
"""
