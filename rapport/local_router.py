"""Teach Chalice's local router (``rapport dev`` and the tests' server, rapport/devstack.py)
API Gateway's greedy path variable ``{proxy+}``, so the catch-all route
(api/routes/meta.py) answers locally exactly as when deployed. Without it an unmatched path
gets Chalice local's 403 that repeats the caller's Authorization header."""
from __future__ import annotations

from types import SimpleNamespace
from urllib.parse import parse_qs, urlparse


def install() -> None:
    from chalice import local

    matcher = local.RouteMatcher
    if getattr(matcher, "greedy_routes", False):
        return
    exact_match = matcher.match_route

    def match_route(self, url: str):
        exact = [r for r in self.route_urls if not r.endswith("+}")]
        try:
            return exact_match(SimpleNamespace(route_urls=exact), url)
        except ValueError:
            parsed = urlparse(url)
            for route in sorted((r for r in self.route_urls if r.endswith("+}")), key=len, reverse=True):
                prefix = route[:route.rindex("{")]
                if parsed.path.startswith(prefix) and len(parsed.path) > len(prefix):
                    name = route[route.rindex("{") + 1:-2]
                    return local.MatchResult(route, {name: parsed.path[len(prefix):]},
                                             parse_qs(parsed.query, keep_blank_values=True))
            raise

    matcher.match_route = match_route
    matcher.greedy_routes = True
