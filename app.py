"""Rapport's Chalice app: the one file that declares every Lambda entry point.

Routes live on blueprints in ``api/routes``. Event handlers are declared here (not on
blueprints) so that Lambda imports them through this module; each is a thin call into
``functions/``. Kept import-light: the domain loads on the first request or event
(docs/performance.md).
"""
import os

from chalice import Chalice

from api.http import rate_limit_the_rest
from api.problems import chalice_errors_as_problems
from api.routes import (
    accounts,
    agents,
    api_keys,
    billing,
    campaigns,
    changes,
    connections,
    customers,
    email,
    identity,
    invoices,
    journeys,
    loyalty,
    meta,
    orders,
    segments,
    shipments,
    unsubscribe,
    webhooks,
)

# configure_logs=False: Powertools' JSON logger writes to the same "rapport" logger; Chalice's
# own stdout handler on it would print every error a second time (tests/unit/test_app_logging.py)
app = Chalice(app_name="rapport", configure_logs=False)
app.api.binary_types = []  # every route speaks JSON
app.register_blueprint(meta.bp)
app.register_blueprint(customers.bp)
app.register_blueprint(api_keys.bp)
app.register_blueprint(orders.bp)
app.register_blueprint(loyalty.bp)
app.register_blueprint(connections.bp)
app.register_blueprint(identity.bp)
app.register_blueprint(billing.bp)
app.register_blueprint(segments.bp)
app.register_blueprint(email.bp)
app.register_blueprint(campaigns.bp)
app.register_blueprint(unsubscribe.bp)
app.register_blueprint(journeys.bp)
app.register_blueprint(accounts.bp)
app.register_blueprint(invoices.bp)
app.register_blueprint(shipments.bp)
app.register_blueprint(changes.bp)
app.register_blueprint(webhooks.bp)
app.register_blueprint(agents.bp)
app.register_middleware(chalice_errors_as_problems, "http")
app.register_middleware(rate_limit_the_rest, "http")  # RateLimit-* on the routes no endpoint() serves

# `chalice package` needs literal sources; infra/resources.json replaces them with the
# stack's own stream and queues (and adds ReportBatchItemFailures, which Chalice omits).
_STREAM = os.environ.get("RAPPORT_STREAM_ARN",
                         "arn:aws:dynamodb:us-east-1:000000000000:table/rapport/stream/replaced-by-infra")


@app.on_dynamodb_record(stream_arn=_STREAM, batch_size=100, starting_position="TRIM_HORIZON",
                        name="dispatch")
def dispatch(event):
    """Table changes -> domain events -> the subscribers' queues (functions/dispatch.py)."""
    from functions import dispatch as handler

    return handler.handle(event.to_dict())


@app.on_sqs_message(queue="rapport-loyalty", batch_size=10, name="loyalty_events")
def loyalty_events(event):
    """Order events -> points (functions/loyalty.py); failures go back to the queue."""
    from functions import loyalty as handler

    return handler.handle_batch(event.to_dict(), event.context)


@app.on_sqs_message(queue="rapport-timeline", batch_size=10, name="timeline_events")
def timeline_events(event):
    """Domain events -> customer timeline entries (functions/timeline.py)."""
    from functions import timeline as handler

    return handler.handle_batch(event.to_dict(), event.context)


@app.on_sqs_message(queue="rapport-segments", batch_size=10, name="segments_events")
def segments_events(event):
    """Order, profile and loyalty events -> each customer's metrics and segment
    memberships (functions/segments.py); failures go back to the queue."""
    from functions import segments as handler

    return handler.handle_batch(event.to_dict(), event.context)


@app.on_sqs_message(queue="rapport-journeys", batch_size=10, name="journeys_events")
def journeys_events(event):
    """Domain events -> journey runs started and ended; birthday backfills
    (functions/journeys.py); failures go back to the queue."""
    from functions import journeys as handler

    return handler.handle_batch(event.to_dict(), event.context)


@app.on_sqs_message(queue="rapport-email", batch_size=1, name="email_work")
def email_work(event):
    """A campaign's audience pages and recipient batches: exactly-once sends through SES,
    throttled (functions/campaigns.py); failures go back to the queue."""
    from functions import campaigns as handler

    return handler.handle_batch(event.to_dict(), event.context)


@app.on_sqs_message(queue="rapport-delivery", batch_size=10, name="email_events")
def email_events(event):
    """SES events (through an EventBridge rule): stats, suppression, consent, timeline
    (functions/email_events.py)."""
    from functions import email_events as handler

    return handler.handle_batch(event.to_dict(), event.context)


@app.on_sqs_message(queue="rapport-sync", batch_size=1, name="sync_work")
def sync_work(event):
    """Connector runs (resumed from their checkpoint) and verified webhooks (functions/sync.py)."""
    from functions import sync as handler

    return handler.handle_batch(event.to_dict(), event.context)


@app.schedule("rate(5 minutes)", name="sync_schedule")
def sync_schedule(event):
    """Queue an incremental run for each connection whose schedule is due."""
    from functions import sync as handler

    return handler.run_schedule(lambda_context=event.context)


@app.schedule("rate(1 hour)", name="billing_meter")
def billing_meter(event):
    """Report metered tenants' customers to their Stripe Billing Meter (functions/billing.py)."""
    from functions import billing as handler

    return handler.run_meter()


@app.schedule("rate(15 minutes)", name="loyalty_schedule")
def loyalty_schedule(event):
    """Activate pending points, expire lots, warn of expiry, recalculate tiers."""
    from functions import loyalty as handler

    return handler.run_schedule(lambda_context=event.context)


@app.schedule("rate(1 minute)", name="segments_schedule")
def segments_schedule(event):
    """Customers whose time condition or score is due to flip: re-evaluated at the instant."""
    from functions import segments as handler

    return handler.run_schedule(lambda_context=event.context)


@app.schedule("rate(1 day)", name="billing_reconcile")
def billing_reconcile(event):
    """Compare each paying tenant with Stripe and repair drift (functions/billing.py)."""
    from functions import billing as handler

    return handler.run_reconcile(lambda_context=event.context)


@app.schedule("rate(1 hour)", name="segment_cuts")
def segment_cuts(event):
    """Each tenant's RFM cut points and VIP threshold: daily per tenant, within the hour for
    a new one (functions/segment_jobs.py)."""
    from functions import segment_jobs as handler

    return handler.run_cuts(lambda_context=event.context)


@app.schedule("rate(1 minute)", name="campaigns_schedule")
def campaigns_schedule(event):
    """Scheduled campaigns whose send_at has come, and stalled sends resumed
    (functions/campaigns.py)."""
    from functions import campaigns as handler

    return handler.run_schedule(lambda_context=event.context)


@app.schedule("rate(1 minute)", name="journeys_schedule")
def journeys_schedule(event):
    """Journey runs whose due time has come: their next steps (functions/journeys.py)."""
    from functions import journeys as handler

    return handler.run_schedule(lambda_context=event.context)


@app.on_sqs_message(queue="rapport-webhooks", batch_size=1, name="webhooks_work")
def webhooks_work(event):
    """New changes fanned out to the tenant's webhook endpoints, and due deliveries
    attempted (functions/webhooks.py); failures go back to the queue."""
    from functions import webhooks as handler

    return handler.handle_batch(event.to_dict(), lambda_context=event.context)


@app.schedule("rate(1 minute)", name="webhooks_schedule")
def webhooks_schedule(event):
    """Webhook deliveries whose next attempt is due, handed to the worker (functions/webhooks.py)."""
    from functions import webhooks as handler

    return handler.run_schedule(lambda_context=event.context)


@app.schedule("rate(15 minutes)", name="shipments_schedule")
def shipments_schedule(event):
    """Re-poll non-terminal shipments whose provider has said nothing for a while, and
    create the trackers of imported parcels (functions/shipments.py)."""
    from functions import shipments as handler

    return handler.run_schedule(lambda_context=event.context)
