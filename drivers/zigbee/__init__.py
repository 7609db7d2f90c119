"""Zigbee through zigpy: IAS zone sensors, IAS WD sirens, door locks and relays (see driver.py)."""
