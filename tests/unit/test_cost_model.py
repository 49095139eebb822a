"""bench/cost_model.py: workload x measured counts x list prices -> line items."""
from __future__ import annotations

from dataclasses import replace

import pytest

from bench import cost_model as cm
from crm.billing import plans

MEASURED = cm.Measured(
    api_call=cm.PerUnit(api_requests=1, rru=1.5, wru=0.4, dynamodb_requests=1.2,
                        lambda_invocations=1.1, lambda_cpu_seconds=0.004, stream_records=0.5,
                        sqs_requests=0.05),
    order=cm.PerUnit(api_requests=3, rru=6, wru=14, dynamodb_requests=9, lambda_invocations=5,
                     lambda_cpu_seconds=0.05, stream_records=15, sqs_requests=3),
    bytes_per_customer=2_000, bytes_per_order=5_000)
WORKLOAD = cm.Workload("starter", customers=10_000, orders=5_000, emails=20_000, api_calls=300_000,
                       sync_runs=2_160, uploads=4)


def test_doubling_api_calls_doubles_the_api_gateway_line_and_leaves_emails_alone():
    one = cm.bill(WORKLOAD, MEASURED)
    two = cm.bill(replace(WORKLOAD, api_calls=600_000, orders=10_000), MEASURED)
    assert two.item("API Gateway (REST)").dollars == pytest.approx(2 * one.item("API Gateway (REST)").dollars)
    assert two.item("SES").dollars == one.item("SES").dollars


def test_api_gateway_line_is_calls_times_the_rest_price():
    b = cm.bill(WORKLOAD, MEASURED)
    calls = 300_000 * 1 + 5_000 * 3
    assert b.item("API Gateway (REST)").quantity == calls
    assert b.item("API Gateway (REST)").dollars == pytest.approx(calls * 3.50 / 1e6)


def test_http_api_and_function_urls_cut_only_the_gateway_line():
    rest = cm.bill(WORKLOAD, MEASURED)
    http = cm.bill(WORKLOAD, MEASURED, settings=cm.Settings(gateway="http"))
    url = cm.bill(WORKLOAD, MEASURED, settings=cm.Settings(gateway="function_url"))
    assert http.item("API Gateway (HTTP API)").dollars == pytest.approx(
        rest.item("API Gateway (REST)").dollars / 3.5)
    assert url.item("Lambda function URL").dollars == 0
    assert rest.total - url.total == pytest.approx(rest.item("API Gateway (REST)").dollars)


def test_totals_add_up_and_the_biggest_item_is_named():
    b = cm.bill(WORKLOAD, MEASURED)
    assert b.total == pytest.approx(sum(i.dollars for i in b.items))
    assert b.biggest.dollars == max(i.dollars for i in b.items)
    heavy_writes = replace(MEASURED, order=replace(MEASURED.order, wru=10_000))
    assert cm.bill(WORKLOAD, heavy_writes).biggest.name == "DynamoDB writes"
    assert cm.bill(WORKLOAD, MEASURED).biggest.name != "DynamoDB writes"


def test_each_service_of_the_issue_has_a_line():
    names = {i.name for i in cm.bill(WORKLOAD, MEASURED).items}
    assert {"API Gateway (REST)", "Lambda requests", "Lambda duration", "DynamoDB writes",
            "DynamoDB reads", "DynamoDB storage", "DynamoDB Streams", "SQS", "SES", "KMS",
            "S3 requests", "DynamoDB rate limit + usage counters"} <= names


def test_rate_limit_line_follows_its_parameter():
    calls = 300_000 + 5_000 * 3
    at_target = cm.bill(WORKLOAD, MEASURED, settings=cm.Settings(rate_limit_requests_per_call=0.05)).item(
        "DynamoDB rate limit + usage counters")
    assert at_target.quantity == pytest.approx(calls * 0.05)
    assert at_target.dollars == pytest.approx(calls * 0.05 * 0.625 / 1e6)
    doubled = cm.bill(WORKLOAD, MEASURED, settings=cm.Settings(rate_limit_requests_per_call=0.1))
    assert doubled.item("DynamoDB rate limit + usage counters").dollars == pytest.approx(2 * at_target.dollars)


def test_lambda_duration_is_cpu_stretched_to_the_memory_plus_io():
    # 1,769 MB is one vCPU: at 512 MB the same CPU takes 1769/512 times as long
    s = cm.Settings(memory_mb=512, io_ms_per_request=5)
    assert cm.lambda_seconds_per_invocation(0.010, 2, s) == pytest.approx(
        round(0.010 * 1769 / 512 + 0.010, 3), abs=0.001)
    assert cm.lambda_seconds_per_invocation(0.010, 0, cm.Settings(memory_mb=3008, io_ms_per_request=0)) \
        == pytest.approx(0.010)
    b = cm.bill(WORKLOAD, MEASURED, settings=cm.Settings(memory_mb=2048))
    half = cm.bill(WORKLOAD, MEASURED, settings=cm.Settings(memory_mb=1024))
    # above one vCPU more memory buys no speed for single-threaded code: GB-s double
    assert b.item("Lambda duration").quantity > half.item("Lambda duration").quantity * 1.5


def test_storage_counts_customers_and_the_months_of_orders_kept():
    b = cm.bill(WORKLOAD, MEASURED)
    gb = (10_000 * 2_000 + 5_000 * 12 * 5_000) / 1e9
    assert b.item("DynamoDB storage").quantity == pytest.approx(gb)
    assert b.item("DynamoDB storage").dollars == pytest.approx(gb * 0.25)


def test_plan_prices_come_from_the_catalogue_and_scale_is_metered_per_1000_customers():
    catalogue = {p.name: p.model_dump() for p in plans.catalogue().plans}
    assert cm.plan_price(catalogue["starter"], WORKLOAD) == catalogue["starter"]["monthly_price"] / 100
    scale = catalogue["scale"]
    per = scale["metered"]["per"]
    big = replace(WORKLOAD, plan="scale", customers=500_000)
    assert cm.plan_price(scale, big) == pytest.approx(500_000 / per * scale["metered"]["unit_price"] / 100)
    assert cm.plan_price(scale, replace(big, customers=500_001)) > cm.plan_price(scale, big)


def test_item_sizes_and_units_follow_dynamodbs_rules():
    item = {"pk": {"S": "T#t1#C#c1"}, "n": {"N": "12345"}, "ok": {"BOOL": True},
            "m": {"M": {"a": {"S": "xy"}}}}
    assert cm.item_size(item) == (2 + 9) + (1 + 4) + (2 + 1) + (1 + 3 + 1 + 1 + 2)
    assert cm.read_units(100, consistent=True) == 1 and cm.read_units(100, consistent=False) == 0.5
    assert cm.read_units(4097, consistent=True) == 2
    assert cm.write_units(1025) == 2 and cm.write_units(10, transactional=True) == 2


def test_gsi_writes_count_each_index_entry_and_twice_for_a_changed_key():
    order = {"pk": {"S": "T#t#C#c"}, "sk": {"S": "A#ORD#o"}, "gsi1pk": {"S": "T#t#ORDERS"},
             "gsi1sk": {"S": "o"}, "gsi2pk": {"S": "T#t#ORDERS#placed"}, "gsi2sk": {"S": "o"}}
    paid = {**order, "gsi2pk": {"S": "T#t#ORDERS#paid"}}
    assert cm.gsi_write_units(None, order) == 2          # inserted into both indexes
    assert cm.gsi_write_units(order, paid) == 1 + 2      # gsi1 updated in place; gsi2 moved
    assert cm.gsi_write_units(order, None) == 2          # deleted from both
    guard = {"pk": {"S": "T#t#U#email#a"}, "sk": {"S": "U"}}
    assert cm.gsi_write_units(None, guard) == 0          # in no index
    big = {**order, "data": {"S": "x" * 2900}}  # with its keys, under 3 KB
    assert cm.gsi_write_units(None, big) == 2 * 3        # 3 KB a copy


def _item(nbytes: int) -> dict:
    return {"pk": {"S": "p"}, "sk": {"S": "s"}, "d": {"S": "x" * (nbytes - 7)}}  # item_size == nbytes


def test_request_units_of_reads_follow_consistency_and_size():
    assert cm.item_size(_item(5000)) == 5000
    assert cm.request_units("GetItem", {"ConsistentRead": True}, {"Item": _item(5000)}) == (2, 0)
    assert cm.request_units("GetItem", {}, {}) == (0.5, 0)   # nothing found: still a unit, halved
    # a GSI Query is eventually consistent whatever ConsistentRead says; sizes add up before rounding
    assert cm.request_units("Query", {"IndexName": "gsi1", "ConsistentRead": True},
                            {"Items": [_item(3000), _item(3000)]}) == (1.0, 0)
    batch = {"RequestItems": {"t": {"Keys": [{}, {}, {}], "ConsistentRead": True}}}
    assert cm.request_units("BatchGetItem", batch, {"Responses": {"t": [_item(100)]}}) == (3, 0)


def test_request_units_of_writes_double_in_a_transaction():
    assert cm.request_units("PutItem", {"Item": _item(1500)}, {}) == (0, 2)
    tx = {"TransactItems": [{"Put": {"Item": _item(1500)}}, {"ConditionCheck": {"Key": {}}},
                            {"Delete": {"Key": {}}}]}
    assert cm.request_units("TransactWriteItems", tx, {}) == (0, 2 * 2 + 2 + 2)
    batch = {"RequestItems": {"t": [{"PutRequest": {"Item": _item(2500)}}, {"DeleteRequest": {"Key": {}}}]}}
    assert cm.request_units("BatchWriteItem", batch, {}) == (0, 3 + 1)


def test_each_connector_run_and_upload_adds_a_measured_run():
    run = cm.PerUnit(wru=24, rru=7, lambda_invocations=3, sqs_requests=3)
    with_runs = cm.bill(WORKLOAD, replace(MEASURED, sync_run=run))
    without = cm.bill(WORKLOAD, MEASURED)
    runs = WORKLOAD.sync_runs + WORKLOAD.uploads
    assert with_runs.item("DynamoDB writes").quantity - without.item("DynamoDB writes").quantity == 24 * runs
    assert with_runs.item("SQS").quantity - without.item("SQS").quantity == 3 * runs
    assert with_runs.item("API Gateway (REST)").quantity == without.item("API Gateway (REST)").quantity
    assert with_runs.item("KMS").quantity == WORKLOAD.sync_runs  # 1 Decrypt per scheduled run
