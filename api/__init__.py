"""HTTP entry points: Chalice blueprints, auth, problem+json errors and OpenAPI.

Route modules import only Chalice and :mod:`api.http` at import time; the domain
(pydantic, PynamoDB) is imported on the first request, so ``import app`` stays small
for Lambda cold starts (see docs/performance.md).
"""
