"""Rapport's Chalice app: the one file that declares every Lambda entry point.

Routes live on blueprints in ``api/routes``; event handlers (arriving with the
events issue) are declared here so that Lambda imports them through this module.
Kept import-light: the domain loads on the first request (docs/performance.md).
"""
from chalice import Chalice

from api.problems import chalice_errors_as_problems
from api.routes import api_keys, customers, meta, orders

app = Chalice(app_name="rapport")
app.api.binary_types = []  # every route speaks JSON
app.register_blueprint(meta.bp)
app.register_blueprint(customers.bp)
app.register_blueprint(api_keys.bp)
app.register_blueprint(orders.bp)
app.register_middleware(chalice_errors_as_problems, "http")
