"""Load control in one package: request priority, admission gates, saturation signals, the
refresh loop that feeds them, and the recorder of finished requests.

The gateway sees only the Protocols in `appliance.gateway.hooks`; this package implements them.
"""
