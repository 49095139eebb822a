"""Live segments: rules over what a customer is (profile, orders, loyalty, RFM, lifetime
value), memberships maintained per change and at the instant a time condition flips.

Pure code (no I/O, unit-tested on its own):
- ``fields``: the fields a rule may name, their types and the operators each type takes;
- ``rules``: the rule format (``{"all"|"any": [...]}`` groups of ``{"field", "op",
  "value"}``), its validation (422 naming the condition), evaluation, and the next
  instant a rule's truth may change for a customer;
- ``aggregate``: an order's contribution, the per-customer aggregate, the facts rules read;
- ``rfm``: quintile cut points, R/F/M scores, the named RFM segments, lifetime value, VIP.

I/O:
- ``maintain``: one customer's metrics and memberships after a change (1 BatchGetItem +
  1 TransactWriteItems), the due index, merge and erasure;
- ``service``: segments' CRUD, preview, members, a customer's segments;
- ``build``: a new or edited segment's background build, resumable;
- ``cuts``: the scheduled RFM cut points and VIP threshold per tenant.
"""
