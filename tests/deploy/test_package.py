"""The deploy path: `chalice package` + infra/resources.json, checked as AWS would see it.

Packages the prod stage once per module (infra/package.py runs `chalice package --stage
prod --merge-template infra/resources.json OUT`; Chalice downloads manylinux wheels from
PyPI), then lints the SAM template, checks the table, the IAM policy and the functions,
and imports the zip in a fresh interpreter that sees only the zip and the Lambda
runtime's boto3. Figures (package time, zip size, cfn-lint warnings) are printed: run
with ``-s`` to see them.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from infra import package as packaging

pytestmark = pytest.mark.slow

ROOT = packaging.ROOT
ZIP_BUDGET_BYTES = 12_000_000  # 10 MB before css-inline (email templates, 2 MB); without boto3/botocore (the runtime's) and without a crypto library (KMS seals secrets)
TABLE_ARN = {"Fn::GetAtt": ["RapportTable", "Arn"]}
INDEX_ARN = {"Fn::Sub": "${RapportTable.Arn}/index/*"}
LOG_GROUP_ARN = {"Fn::GetAtt": ["RapportLogGroup", "Arn"]}
STREAM_ARN = {"Fn::GetAtt": ["RapportTable", "StreamArn"]}
STREAM_DLQ_ARN = {"Fn::GetAtt": ["StreamDeadLetterQueue", "Arn"]}
# What Lambda's event source mapping does with the function's role (the functions' own
# code never reads the stream): ListStreams is not granted, it has no resource-level
# permission, so scoped to the stream it would allow nothing (docs/deploy.md).
STREAM_ACTIONS = {"dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator"}
# Exactly what the code calls (docs/deploy.md): TransactWriteItems has no IAM action of
# its own, its items are checked as PutItem/UpdateItem/DeleteItem/ConditionCheckItem.
TABLE_ACTIONS = {
    "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem",
    "dynamodb:ConditionCheckItem", "dynamodb:BatchGetItem", "dynamodb:BatchWriteItem",
    "dynamodb:Query", "dynamodb:DescribeTable",
}
FUNCTION_TYPES = ("AWS::Serverless::Function", "AWS::Lambda::Function")
POLLED_EVENT_TYPES = ("SQS", "DynamoDB", "Kinesis")  # SAM events that become event source mappings
FOURTEEN_DAYS = 14 * 24 * 3600


def _report(request: pytest.FixtureRequest, line: str) -> None:
    """Print a figure even when output is captured (these tests exist to report them)."""
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print(f"\n[deploy] {line}", end="", flush=True)


@pytest.fixture(scope="module")
def packaged(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest):
    built = packaging.package("prod", tmp_path_factory.mktemp("package-prod") / "out")
    _report(request, f"chalice package --stage prod: {built.seconds:.1f} s, deployment.zip "
                     f"{built.zip_bytes:,} bytes ({built.zip_bytes / 2**20:.2f} MiB)")
    return built


@pytest.fixture(scope="module")
def template(packaged) -> dict:
    return json.loads(packaged.template.read_text())


@pytest.fixture(scope="module")
def unzipped(packaged, tmp_path_factory: pytest.TempPathFactory) -> Path:
    task = tmp_path_factory.mktemp("var-task")
    assert not any(task.iterdir())
    with zipfile.ZipFile(packaged.zip_path) as z:
        z.extractall(task)
    return task


@pytest.fixture(scope="module")
def dev_packaged(packaged, tmp_path_factory: pytest.TempPathFactory, request):
    # after prod, so Chalice reuses its cached zip (same code and requirements)
    built = packaging.package("dev", tmp_path_factory.mktemp("package-dev") / "out")
    _report(request, f"chalice package --stage dev: {built.seconds:.1f} s, "
                     f"{built.zip_bytes:,} bytes")
    return built


def _broken_copy(template: dict, dest: Path) -> Path:
    """The prod template with two errors cfn-lint must report (proof the lint is not vacuous)."""
    broken = json.loads(json.dumps(template))
    broken["Resources"]["RapportTable"]["Properties"]["BillingMode"] = "ON_DEMAND"
    broken["Resources"]["DefaultRole"]["Properties"]["Policies"][0]["PolicyDocument"][
        "Statement"][0]["Resource"] = {"Fn::GetAtt": ["NoSuchTable", "Arn"]}
    dest.write_text(json.dumps(broken, indent=1))
    return dest


@pytest.fixture(scope="module")
def lint(packaged, dev_packaged, template, tmp_path_factory) -> dict[str, list[dict]]:
    """cfn-lint (default rules + informational) over the prod, dev and broken templates,
    in one run (loading its schemas takes seconds): {"prod"|"dev"|"broken": matches}."""
    files = {"prod": packaged.template, "dev": dev_packaged.template,
             "broken": _broken_copy(template, tmp_path_factory.mktemp("lint") / "broken.json")}
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from cfnlint.runner import main; sys.exit(main())",
         "--format", "json", "--include-checks", "I", "--", *map(str, files.values())],
        capture_output=True, text=True, check=False)
    # cfn-lint's exit code is a bit mask: 2 errors, 4 warnings, 8 informational
    assert proc.returncode & ~(2 | 4 | 8) == 0, proc.stderr
    by_file = {str(path): key for key, path in files.items()}
    out: dict[str, list[dict]] = {key: [] for key in files}
    for match in json.loads(proc.stdout or "[]"):
        out[by_file[match["Filename"]]].append(match)
    return out


def _functions(template: dict) -> dict[str, dict]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] in FUNCTION_TYPES}


def _queue_arn(template: dict, value) -> str:
    """The logical id of this stack's queue that ``value`` is the ARN of, or fail."""
    if isinstance(value, dict) and list(value) == ["Fn::GetAtt"] and value["Fn::GetAtt"][1] == "Arn":
        name = value["Fn::GetAtt"][0]
    elif isinstance(value, dict) and list(value) == ["Fn::Sub"] and isinstance(value["Fn::Sub"], str) \
            and re.fullmatch(r"\$\{(\w+)\.Arn}", value["Fn::Sub"]):
        name = re.fullmatch(r"\$\{(\w+)\.Arn}", value["Fn::Sub"]).group(1)
    else:
        raise AssertionError(f"{value} is not the ARN of one of this stack's queues")
    assert template["Resources"][name]["Type"] == "AWS::SQS::Queue", name
    return name


def _event_sources(template: dict) -> list[tuple[str, str, dict]]:
    """(function, event type, properties) of every polled event source."""
    found = []
    for name, function in _functions(template).items():
        for event in function["Properties"].get("Events", {}).values():
            if event["Type"] in POLLED_EVENT_TYPES:
                found.append((name, event["Type"], event["Properties"]))
    return found


# -- the package step --------------------------------------------------------------


def test_zip_is_under_budget(packaged, request):
    _report(request, f"deployment.zip: {packaged.zip_bytes:,} bytes")
    assert packaged.zip_bytes < ZIP_BUDGET_BYTES


def test_zip_ships_our_packages_at_its_root_through_the_vendor_symlinks(packaged):
    for name in packaging.VENDORED:
        link = ROOT / "vendor" / name
        assert link.is_symlink() and os.readlink(link) == f"../{name}", link
    with zipfile.ZipFile(packaged.zip_path) as z:
        names = set(z.namelist())
    assert {"app.py", "chalice/app.py", "chalice/__init__.py"} <= names
    for package in packaging.VENDORED:
        source = {p.relative_to(ROOT).as_posix() for p in (ROOT / package).rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}
        shipped = {n for n in names if n.startswith(f"{package}/") and not n.endswith("/")}
        assert shipped == source, f"{package}/ in the zip differs from the source tree"
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    tops = {n.split("/", 1)[0] for n in names}
    # the Lambda runtime provides these; the dev-only packages never ship
    assert not tops & {"boto3", "botocore", "s3transfer", "urllib3", "dateutil", "six.py"}
    assert not tops & {"tests", "rapport", "infra", "bench", "moto", "typer", "rich", "rapport_acme"}
    assert "httpx" in tops and "cryptography" not in tops  # the connectors' runtime; KMS seals secrets


def test_shipped_dependencies_are_exactly_requirements_txt(packaged):
    wanted = set()
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            wanted.add((name.lower().replace("_", "-"), version.split(";")[0].strip()))
    with zipfile.ZipFile(packaged.zip_path) as z:
        metadata = [n for n in z.namelist() if n.endswith(".dist-info/METADATA")]
        shipped = set()
        for path in metadata:
            fields = dict(line.split(": ", 1) for line in z.read(path).decode().splitlines()
                          if line.startswith(("Name: ", "Version: ")))
            shipped.add((fields["Name"].lower().replace("_", "-"), fields["Version"]))
    assert shipped == wanted


def test_native_code_is_for_linux_x86_64_cpython_311(packaged):
    with zipfile.ZipFile(packaged.zip_path) as z:
        libs = [n for n in z.namelist() if n.endswith(".so") or ".so." in n]
        assert any(n.startswith("pydantic_core/") for n in libs), libs
        for name in libs:
            assert "cpython-311-x86_64-linux-gnu" in name or ".abi3." in name, name
            header = z.read(name)[:20]
            assert header[:4] == b"\x7fELF" and header[4] == 2, f"{name}: not a 64-bit ELF"
            assert int.from_bytes(header[18:20], "little") == 0x3E, f"{name}: not x86-64"
        for wheel in (n for n in z.namelist() if n.endswith(".dist-info/WHEEL")):
            tags = [line.split(": ", 1)[1] for line in z.read(wheel).decode().splitlines()
                    if line.startswith("Tag: ")]
            assert tags, wheel
            for tag in tags:
                python, abi, platform = tag.split("-")
                pure = abi == "none" and platform == "any"
                native = (python == "cp311" or abi == "abi3") and platform.endswith("x86_64") \
                    and "linux" in platform
                assert pure or native, f"{wheel}: {tag}"


# -- the template ------------------------------------------------------------------


def test_cfn_lint_finds_no_errors(lint, request):
    for stage in ("prod", "dev"):
        for m in lint[stage]:
            _report(request, f"cfn-lint {stage} {m['Level']} {m['Rule']['Id']} "
                             f"{'/'.join(map(str, m['Location']['Path']))}: {m['Message']}")
        if not lint[stage]:
            _report(request, f"cfn-lint {stage}: no errors, warnings or informational findings")
        errors = [m for m in lint[stage] if m["Level"] == "Error"]
        assert not errors, json.dumps(errors, indent=1)


def test_cfn_lint_would_catch_a_broken_template(lint):
    paths = [m["Location"]["Path"] for m in lint["broken"] if m["Level"] == "Error"]
    assert any("BillingMode" in p for p in paths), paths
    assert any("Policies" in p and "Resource" in p for p in paths), paths


def _references(node, found: set[str]) -> set[str]:
    """Logical ids named by Ref, Fn::GetAtt and Fn::Sub anywhere under node."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str):
                found.add(value)
            elif key == "Fn::GetAtt":
                found.add(value[0] if isinstance(value, list) else value.split(".")[0])
            elif key == "Fn::Sub":
                text, names = (value[0], value[1]) if isinstance(value, list) else (value, {})
                found.update(ref.split(".")[0] for ref in re.findall(r"\$\{([^!}][^}]*)}", text)
                             if ref.split(".")[0] not in names)
                _references(names, found)
            else:
                _references(value, found)
    elif isinstance(node, list):
        for item in node:
            _references(item, found)
    return found


def test_every_reference_resolves(template):
    """cfn-lint does not check Refs inside environment variables whose names contain an
    underscore (RAPPORT_TABLE), so every Ref/GetAtt/Sub is resolved here."""
    known = set(template["Resources"]) | set(template.get("Parameters", {}))
    refs = _references(template, set())
    assert {"RapportTable", "RapportLogGroup"} <= refs
    unknown = {r for r in refs if r not in known and not r.startswith("AWS::")}
    assert not unknown, unknown


def test_table_has_the_keys_indexes_stream_pitr_and_ttl(template):
    table = template["Resources"]["RapportTable"]
    assert table["Type"] == "AWS::DynamoDB::Table"
    assert table["DeletionPolicy"] == table["UpdateReplacePolicy"] == "Retain"
    props = table["Properties"]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert "ProvisionedThroughput" not in props and "TableName" not in props
    assert props["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"},
                                  {"AttributeName": "sk", "KeyType": "RANGE"}]
    indexes = {i["IndexName"]: i for i in props["GlobalSecondaryIndexes"]}
    assert set(indexes) == {"gsi1", "gsi2"}
    for name, index in indexes.items():
        assert index["KeySchema"] == [{"AttributeName": f"{name}pk", "KeyType": "HASH"},
                                      {"AttributeName": f"{name}sk", "KeyType": "RANGE"}]
        assert index["Projection"] == {"ProjectionType": "ALL"}
        assert "ProvisionedThroughput" not in index
    assert {(a["AttributeName"], a["AttributeType"]) for a in props["AttributeDefinitions"]} == \
        {(k, "S") for k in ("pk", "sk", "gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk")}
    assert props["StreamSpecification"] == {"StreamViewType": "NEW_AND_OLD_IMAGES"}
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props["TimeToLiveSpecification"] == {"AttributeName": "ttl", "Enabled": True}
    assert props["SSESpecification"] == {"SSEEnabled": True}


def test_outputs_name_the_table_and_the_log_group(template):
    assert template["Outputs"]["RapportTableName"]["Value"] == {"Ref": "RapportTable"}
    assert template["Outputs"]["RapportLogGroupName"]["Value"] == {"Ref": "RapportLogGroup"}
    for queue in ("LoyaltyQueue", "LoyaltyDeadLetterQueue", "TimelineQueue",
                  "TimelineDeadLetterQueue", "StreamDeadLetterQueue"):  # for `rapport dlq --stack`
        assert template["Outputs"][f"{queue}Url"]["Value"] == {"Ref": queue}
    assert "EndpointURL" in template["Outputs"]  # Chalice's own output survives the merge


def test_every_function_runs_with_the_table_role_and_log_group(template):
    from crm.queues import SUBSCRIBERS, env_name
    from infra.bootstrap import queue_logical_id

    functions = _functions(template)
    assert {"APIHandler", "Dispatch", "LoyaltyEvents", "TimelineEvents", "LoyaltySchedule"} <= set(functions)
    for name, function in functions.items():
        props = function["Properties"]
        assert props["Role"] == {"Fn::GetAtt": ["DefaultRole", "Arn"]}, name
        variables = props["Environment"]["Variables"]
        assert variables["RAPPORT_TABLE"] == {"Ref": "RapportTable"}, (
            f"{name}: add it under Resources.{name} in infra/resources.json")
        for subscriber in SUBSCRIBERS:  # a queue's Ref is its URL
            assert variables[env_name(subscriber)] == {"Ref": queue_logical_id(subscriber)}, name
        assert props["LoggingConfig"] == {"LogGroup": {"Ref": "RapportLogGroup"}}, name
        assert props["Runtime"] == "python3.11" and props["Architectures"] == ["x86_64"]
    assert functions["APIHandler"]["Properties"]["MemorySize"] == 1024  # the prod stage


def test_queues_have_dead_letter_queues_retention_and_encryption(template):
    from crm.queues import MAX_RECEIVES, SUBSCRIBERS
    from infra.bootstrap import queue_logical_id

    resources = template["Resources"]
    queues = {n: r for n, r in resources.items() if r["Type"] == "AWS::SQS::Queue"}
    for name, queue in queues.items():
        props = queue["Properties"]
        assert "QueueName" not in props, f"{name}: let CloudFormation name it (stages must not collide)"
        assert props["SqsManagedSseEnabled"] is True and "KmsMasterKeyId" not in props, name
        assert queue["DeletionPolicy"] == queue["UpdateReplacePolicy"] == "Delete", name
    timeouts = {}  # queue -> the timeouts of the functions that consume it
    for function, kind, props in _event_sources(template):
        if kind == "SQS":
            timeouts.setdefault(_queue_arn(template, props["Queue"]), []).append(
                resources[function]["Properties"]["Timeout"])
    dead_letter = set()
    for subscriber in SUBSCRIBERS:
        name = queue_logical_id(subscriber)
        props = queues[name]["Properties"]
        assert props["RedrivePolicy"]["maxReceiveCount"] == MAX_RECEIVES, name
        dlq = _queue_arn(template, props["RedrivePolicy"]["deadLetterTargetArn"])
        assert "RedrivePolicy" not in queues[dlq]["Properties"], dlq
        dead_letter.add(dlq)
        # AWS's advice for Lambda consumers: at least 6 x the function timeout, so that a
        # message is not delivered again while a throttled or retried invocation runs
        assert timeouts.get(name), f"nothing consumes {name}"
        assert props["VisibilityTimeout"] >= 6 * max(timeouts[name]), name
        assert props["MessageRetentionPeriod"] <= FOURTEEN_DAYS
    for dlq in dead_letter | {"StreamDeadLetterQueue"}:
        assert queues[dlq]["Properties"]["MessageRetentionPeriod"] == FOURTEEN_DAYS, dlq
    assert set(queues) == {queue_logical_id(s) for s in SUBSCRIBERS} | dead_letter | {"StreamDeadLetterQueue"}


def test_event_sources_report_batch_item_failures_and_read_this_stacks_stream_and_queues(template):
    """Chalice names its sources by placeholder ARNs and omits FunctionResponseTypes;
    infra/resources.json must point each at this stack's resources and add it."""
    from crm.queues import SUBSCRIBERS
    from infra.bootstrap import queue_logical_id

    assert not [n for n, r in template["Resources"].items()
                if r["Type"] == "AWS::Lambda::EventSourceMapping"], "only SAM events, checked below"
    sources = _event_sources(template)
    consumed = set()
    for function, kind, props in sources:
        assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"], function
        if kind == "SQS":
            consumed.add(_queue_arn(template, props["Queue"]))
            assert props["BatchSize"] <= 10, function
        elif kind == "DynamoDB":
            assert props["Stream"] == STREAM_ARN, function
            assert props["StartingPosition"] == "TRIM_HORIZON", function
            # a poison record must not block the shard for the stream's 24 hours
            assert props["BisectBatchOnFunctionError"] is True, function
            assert 0 <= props["MaximumRetryAttempts"] <= 10, function
            assert props["DestinationConfig"] == {"OnFailure": {"Destination": STREAM_DLQ_ARN}}, function
        else:
            raise AssertionError(f"{function}: an unexpected {kind} source")
    assert sorted(kind for _, kind, _ in sources) == ["DynamoDB"] + ["SQS"] * len(SUBSCRIBERS)
    assert consumed == {queue_logical_id(s) for s in SUBSCRIBERS}
    schedules = [e for f in _functions(template).values()
                 for e in f["Properties"].get("Events", {}).values() if e["Type"] == "Schedule"]
    assert schedules, "the loyalty schedule"


def test_iam_policy_is_least_privilege(template):
    roles = {n: r for n, r in template["Resources"].items() if r["Type"] == "AWS::IAM::Role"}
    assert set(roles) == {"DefaultRole"}, "one role, shared by every function"
    assert not [n for n, r in template["Resources"].items()
                if r["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy")]
    role = roles["DefaultRole"]["Properties"]
    assert "ManagedPolicyArns" not in role and "PermissionsBoundary" not in role
    assert role["AssumeRolePolicyDocument"]["Statement"] == [{
        "Sid": "", "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
        "Action": "sts:AssumeRole"}]
    [policy] = role["Policies"]  # the merge replaced Chalice's generated policy
    statements = policy["PolicyDocument"]["Statement"]
    granted: dict[str, list] = {}
    for st in statements:
        assert st["Effect"] == "Allow" and set(st) <= {"Sid", "Effect", "Action", "Resource", "Condition"}, st
        # the one condition narrows the uploads listing (an erasure's follow-up) to the uploads prefix
        assert "Condition" not in st or (st["Action"] == ["s3:ListBucket"] and st["Condition"] == {
            "StringLike": {"s3:prefix": ["uploads/*"]}}), st
        actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
        assert "*" not in resources and not any("*" in a for a in actions), st
        for action in actions:
            granted.setdefault(action, []).extend(resources)
    dynamodb = {a: r for a, r in granted.items() if a.startswith("dynamodb:")}
    assert set(dynamodb) == TABLE_ACTIONS | STREAM_ACTIONS
    for action, resources in dynamodb.items():
        expected = ([STREAM_ARN] if action in STREAM_ACTIONS
                    else [TABLE_ARN, INDEX_ARN] if action == "dynamodb:Query" else [TABLE_ARN])
        assert sorted(map(json.dumps, resources)) == sorted(map(json.dumps, expected)), action
    queues = [{"Fn::GetAtt": [q, "Arn"]} for q in ("LoyaltyQueue", "TimelineQueue", "SyncQueue", "SegmentsQueue",
                                                   "EmailQueue", "DeliveryQueue", "JourneysQueue", "WebhooksQueue")]
    sqs = {a: sorted(map(json.dumps, r)) for a, r in granted.items() if a.startswith("sqs:")}
    # no event is routed to the timeline today; SES's events reach the delivery queue through
    # EventBridge (its queue policy), not through the functions
    sent = [q for q in queues if q["Fn::GetAtt"][0] not in ("TimelineQueue", "DeliveryQueue")]
    assert sqs == {  # the dispatcher sends; Lambda receives and deletes for the consumers and
                     # sends a stream batch it gave up on to the stream DLQ
        "sqs:SendMessage": sorted(map(json.dumps, sent + [STREAM_DLQ_ARN])),
        "sqs:ReceiveMessage": sorted(map(json.dumps, queues)),
        "sqs:DeleteMessage": sorted(map(json.dumps, queues)),
        "sqs:GetQueueAttributes": sorted(map(json.dumps, queues)),
    }
    logs = {a: r for a, r in granted.items() if a.startswith("logs:")}
    assert logs == {"logs:CreateLogStream": [LOG_GROUP_ARN], "logs:PutLogEvents": [LOG_GROUP_ARN]}
    # connector secrets: Encrypt/Decrypt under the stack's own key; CSV uploads: one prefix of its bucket
    key = [{"Fn::GetAtt": ["ConnectionsKey", "Arn"]}]
    kms = {a: r for a, r in granted.items() if a.startswith("kms:")}
    assert kms == {"kms:Encrypt": key, "kms:Decrypt": key}
    uploads = [{"Fn::Sub": "${UploadsBucket.Arn}/uploads/*"}]
    s3 = {a: r for a, r in granted.items() if a.startswith("s3:")}
    # listing the bucket is allowed for the uploads prefix only (the Condition checked above)
    assert s3 == {"s3:PutObject": uploads, "s3:GetObject": uploads,
                  "s3:ListBucket": [{"Fn::GetAtt": ["UploadsBucket", "Arn"]}]}
    # SES: sends name the stack's configuration set; sender identities are the tenants' own
    # (each tagged with its tenant, crm/email/ses_identities.py), so only identity ARNs
    arn = "arn:${AWS::Partition}:ses:${AWS::Region}:${AWS::AccountId}:"
    identities = {"Fn::Sub": arn + "identity/*"}
    ses = {a: r for a, r in granted.items() if a.startswith("ses:")}
    assert ses == {"ses:SendEmail": [identities, {"Fn::Sub": arn + "configuration-set/${EmailConfigurationSet}"}],
                   **{f"ses:{a}": [identities] for a in ("CreateEmailIdentity", "TagResource", "GetEmailIdentity",
                                                          "DeleteEmailIdentity")}}
    assert set(granted) == set(dynamodb) | set(sqs) | set(logs) | set(kms) | set(s3) | set(ses)


def test_iam_actions_exist(template):
    """cfn-lint skips its IAM action check (W3037) for SAM templates; do it here with its data."""
    import importlib.util

    [cfnlint_dir] = importlib.util.find_spec("cfnlint").submodule_search_locations
    services = json.loads(Path(cfnlint_dir, "data", "AdditionalSpecs", "Policies.json").read_text())
    statements = template["Resources"]["DefaultRole"]["Properties"]["Policies"][0][
        "PolicyDocument"]["Statement"]
    for st in statements:
        for action in st["Action"]:
            service, _, name = action.partition(":")
            assert name.lower() in services[service]["Actions"], action


# -- the zip in a Lambda-like interpreter ----------------------------------------------


def _runtime_dir(dest: Path) -> list[str]:
    """boto3 and its dependency closure, symlinked from this venv: what the Lambda
    Python runtime puts on sys.path besides /var/task."""
    from importlib import metadata

    from packaging.requirements import Requirement

    seen, todo, linked = set(), ["boto3"], []
    while todo:
        dist = metadata.distribution(todo.pop())
        name = dist.metadata["Name"].lower()
        if name in seen:
            continue
        seen.add(name)
        for spec in dist.requires or []:
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
        tops = {Path(f).parts[0] for f in dist.files or []}
        for top in sorted(tops):
            if top.endswith((".dist-info", ".data", ".pth")) or top in ("..", "__pycache__", "bin"):
                continue
            source = Path(dist.locate_file(top))
            if source.exists() and not (dest / top).exists():
                (dest / top).symlink_to(source)
                linked.append(top)
    return sorted(linked)


def test_zip_imports_and_serves_a_first_request_with_only_the_lambda_runtime(
        unzipped, tmp_path_factory, request):
    runtime = tmp_path_factory.mktemp("var-runtime")
    linked = _runtime_dir(runtime)
    assert {"boto3", "botocore"} <= set(linked)
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_REGION": "us-east-1", "RAPPORT_TABLE": "rapport-probe",
           "POWERTOOLS_SERVICE_NAME": "rapport", "RAPPORT_KEY_CACHE_SECONDS": "60"}
    proc = subprocess.run(
        [sys.executable, "-I", "-S", str(Path(__file__).with_name("lambda_probe.py")),
         str(unzipped), str(runtime)],
        cwd=tmp_path_factory.mktemp("cwd"), env=env, capture_output=True, text=True,
        timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-5000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    _report(request, f"runtime dir: {', '.join(linked)}")
    _report(request, f"lambda probe: {report}")
    assert report["pydantic_core_from"].startswith(str(unzipped))
    assert report["boto3_from"].startswith(str(runtime))
    assert report["first_request_status"] == 200 and report["unauthenticated_status"] == 401


# -- the other stage ----------------------------------------------------------------


def test_dev_stage_packages_too(packaged, dev_packaged, template, lint):
    assert not [m for m in lint["dev"] if m["Level"] == "Error"]
    dev = json.loads(dev_packaged.template.read_text())
    handler = dev["Resources"]["APIHandler"]["Properties"]
    assert handler["MemorySize"] == 512
    assert handler["Environment"]["Variables"]["RAPPORT_TABLE"] == {"Ref": "RapportTable"}
    assert dev["Resources"]["DefaultRole"] == template["Resources"]["DefaultRole"]
    assert dev["Resources"]["RapportTable"] == template["Resources"]["RapportTable"]
