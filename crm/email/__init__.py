"""Email: templates, senders, campaigns, unsubscribe, SES events (docs/email.md).

Modules (each small, named for what it does; pure planning apart from I/O):

* ``render``      jinja2 sandbox rendering of a saved template (subject, HTML, text)
* ``variables``   what a template sees: ``customer``, ``tenant``, ``event``,
                  ``unsubscribe_url``, ``postal_address``
* ``links``       signed, opaque unsubscribe tokens and URLs (no key needed to use one)
* ``templates``   template CRUD and save-time validation (syntax, unknown variables,
                  required marketing variables, CSS inlined, text derived)
* ``settings``    the tenant's email settings (postal address, default sender)
* ``senders``     sender identities in SES (domain or address, DKIM records, verified?)
* ``suppression`` the tenant's suppression list (SHA-256 of each address)
* ``campaigns``   campaign CRUD and state machine (draft, scheduled, sending, paused,
                  sent, cancelled)
* ``sending``     the exactly-once send of one recipient batch (send records, consent and
                  suppression re-checked, frequency cap, SES call, completion)
* ``throttle``    token buckets shared by every sending Lambda (tenant plan, SES account)
* ``mime``        the raw MIME message with RFC 8058 one-click unsubscribe headers
* ``ses``         the SES v2 calls (send raw, identities) and message tags
* ``delivery``    SES events (bounce, complaint, delivery, open, click, ...) applied:
                  stats, suppression, consent, timeline
"""
