"""The connector plugin SDK and the built-in connectors.

Empty until the connectors issue; connectors may import crm, never api or functions.
"""
