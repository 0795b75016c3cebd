#!/usr/bin/env python3
"""The custom metrics: template.yaml's dashboard and alarms against what the functions print.

    check-metrics.py drive BASE_URL LOG   run the degraded scenario (scripts/metrics-check.sh)
    check-metrics.py check LOG...         the template against the EMF lines in the logs

`check` reads every metric of namespace Favorites that template.yaml's dashboard body and
alarms name, with its `function` dimension (a function of the template), and every Embedded
Metric Format document in the logs (the functions' stdout, as the emulators write it). It
fails when
  - the template names no Favorites metric, or the logs hold no EMF document (nothing to
    compare is a failure, not a pass);
  - an EMF document is malformed: another namespace, other dimensions than [["function"]], a
    declared metric without a value;
  - the template shows or alarms on a metric of a function that no log shows that function
    printing;
  - a function printed a metric that the dashboard does not show.

`drive` sends the requests of the degraded run to functions whose Redis and enrichment
service refuse connections (scripts/metrics-check.sh starts them): every answer must still be a
success (the cache fails open, lists go out without enrichment), and their metrics are the ones
the e2e run cannot produce (CacheFailOpen, EnrichmentLatency, EnrichmentBreakerOpen). It then
checks that no secret it used or configured appears in LOG.

Standard library only, plus PyYAML (in the project venv).
"""
import json
import os
import pathlib
import re
import sys
import time
import urllib.error
import urllib.request
import uuid

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
NAMESPACE = "Favorites"
DIMENSION = "function"


# ---------------------------------------------------------------------------------------------
# template.yaml


class CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags: `!Ref X` is {"Ref": "X"}, `!Sub s` is
    {"Fn::Sub": s}, `!GetAtt A.B` is {"Fn::GetAtt": ["A", "B"]}, and so on."""


def _cfn_tag(loader, suffix, node):
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


CfnLoader.add_multi_constructor("!", _cfn_tag)


def template_functions(template: dict) -> dict[str, str]:
    """Logical id -> binary name of every function."""
    return {
        logical_id: resource["Metadata"]["BuildProperties"]["Binary"]
        for logical_id, resource in template["Resources"].items()
        if resource.get("Type") == "AWS::Serverless::Function"
    }


def dashboard_metrics(template: dict, functions: dict[str, str], problems: list[str]):
    """(metric, binary, where) for every Favorites metric in a dashboard widget."""
    found = []
    for logical_id, resource in template["Resources"].items():
        if resource.get("Type") != "AWS::CloudWatch::Dashboard":
            continue
        body = resource["Properties"]["DashboardBody"]["Fn::Sub"]
        body = body[0] if isinstance(body, list) else body
        # A string that is exactly a ${Function} reference keeps its name; any other ${...}
        # (parameters, pseudo parameters) stands for a string or a number, and 1 is both.
        body = re.sub(r'"\$\{(\w+)\}"', lambda m: json.dumps("@" + m.group(1)), body)
        body = re.sub(r"\$\{[^}]+\}", "1", body)
        for widget in json.loads(body)["widgets"]:
            properties = widget.get("properties", {})
            previous: list = []
            for entry in properties.get("metrics", []):
                values = [v for v in entry if not isinstance(v, dict)]
                if not values:  # an expression
                    continue
                # CloudWatch's shorthand: "..." repeats the previous metric's leading values,
                # "." the previous metric's value at that position.
                if values[0] == "...":
                    values = previous[: len(previous) - (len(values) - 1)] + values[1:]
                values = [previous[i] if v == "." and i < len(previous) else v for i, v in enumerate(values)]
                previous = values
                if values[0] != NAMESPACE:
                    continue
                where = f"{logical_id} widget {properties.get('title')!r}"
                metric, dimensions = values[1], values[2:]
                binary = function_of(dict(zip(dimensions[::2], dimensions[1::2])), len(dimensions), functions, where, problems)
                if binary:
                    found.append((metric, binary, where))
    return found


def function_of(dimensions: dict, count: int, functions: dict[str, str], where: str, problems: list[str]):
    """The binary a metric's dimensions name; a problem unless they are exactly `function`,
    naming one of the template's functions."""
    value = dimensions.get(DIMENSION)
    if count != 2 or value is None:
        problems.append(f"{where}: a Favorites metric needs exactly the dimension {DIMENSION!r}, has {dimensions}")
        return None
    if isinstance(value, dict):
        value = "@" + value.get("Ref", "")
    if not (isinstance(value, str) and value.startswith("@") and value[1:] in functions):
        problems.append(f"{where}: dimension {DIMENSION}={value!r} is not a function of the template")
        return None
    return functions[value[1:]]


def alarm_metrics(template: dict, functions: dict[str, str], problems: list[str]):
    """(metric, binary, where) for every Favorites metric an alarm watches."""
    found = []
    for logical_id, resource in template["Resources"].items():
        if resource.get("Type") != "AWS::CloudWatch::Alarm":
            continue
        props = resource["Properties"]
        metrics = [props] + [m["MetricStat"]["Metric"] for m in props.get("Metrics", []) if "MetricStat" in m]
        for metric in metrics:
            if metric.get("Namespace") != NAMESPACE:
                continue
            dimensions = {d["Name"]: d["Value"] for d in metric.get("Dimensions", [])}
            binary = function_of(dimensions, 2 * len(dimensions), functions, logical_id, problems)
            if binary:
                found.append((metric["MetricName"], binary, logical_id))
    return found


# ---------------------------------------------------------------------------------------------
# logs


def emitted_metrics(logs: list[pathlib.Path], problems: list[str]) -> dict[tuple[str, str], int]:
    """(metric, function) -> how many EMF documents in the logs carry it."""
    seen: dict[tuple[str, str], int] = {}
    for log in logs:
        for number, line in enumerate(log.read_text(errors="replace").splitlines(), 1):
            if '"_aws"' not in line:
                continue
            try:
                document = json.loads(line)
                directives = document["_aws"]["CloudWatchMetrics"]
            except (ValueError, KeyError, TypeError):
                problems.append(f"{log.name}:{number}: an EMF line that does not parse: {line[:200]}")
                continue
            for directive in directives:
                if directive.get("Namespace") != NAMESPACE or directive.get("Dimensions") != [[DIMENSION]]:
                    problems.append(f"{log.name}:{number}: namespace or dimensions other than {NAMESPACE}/[[{DIMENSION}]]: {line[:200]}")
                    continue
                function = document.get(DIMENSION)
                for metric in directive.get("Metrics", []):
                    name = metric.get("Name")
                    if not function or document.get(name) is None:
                        problems.append(f"{log.name}:{number}: {name} without a value or a function: {line[:200]}")
                        continue
                    seen[(name, function)] = seen.get((name, function), 0) + 1
    return seen


def check(log_paths: list[str]) -> int:
    problems: list[str] = []
    template = yaml.load((ROOT / "template.yaml").read_text(), Loader=CfnLoader)
    functions = template_functions(template)
    shown = dashboard_metrics(template, functions, problems)
    alarmed = alarm_metrics(template, functions, problems)
    if not shown:
        problems.append("template.yaml's dashboard shows no Favorites metric: nothing to check")
    logs = [pathlib.Path(p) for p in log_paths]
    for log in logs:
        if not log.is_file():
            problems.append(f"{log}: no such log (run the whole suite: make test)")
    emitted = emitted_metrics([log for log in logs if log.is_file()], problems)
    if not emitted:
        problems.append(f"no EMF document in {', '.join(map(str, logs))}: the functions printed no metric")
    for metric, binary, where in shown + alarmed:
        if (metric, binary) not in emitted:
            problems.append(f"{where}: {metric} of {binary}, which no log shows {binary} printing")
    on_dashboard = {(metric, binary) for metric, binary, _ in shown}
    for metric, function in sorted(emitted.keys() - on_dashboard):
        problems.append(f"{function} printed {metric}, which the dashboard does not show")
    if problems:
        print(f"check-metrics: {len(problems)} problem(s):", file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        return 1
    pairs = sorted({(m, b) for m, b, _ in shown + alarmed})
    print(
        f"check-metrics: the {len(pairs)} metric/function pairs of the dashboard and the "
        f"{len({w for _, _, w in alarmed})} custom-metric alarms were all printed by their functions "
        f"({sum(emitted.values())} metric values in {len(logs)} logs); every printed metric is on the dashboard"
    )
    for metric, binary in pairs:
        print(f"  {metric:<24} {binary:<16} {emitted[(metric, binary)]} documents")
    return 0


# ---------------------------------------------------------------------------------------------
# the degraded run


class Api:
    def __init__(self, base: str, marker: str):
        self.base = base.rstrip("/")
        self.marker = marker
        self.count = 0

    def call(self, method: str, path: str, body=None, token=None, headers=None):
        self.count += 1
        request = urllib.request.Request(self.base + path, method=method)
        request.add_header("x-request-id", f"{self.marker}-{self.count}")
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            request.add_header("content-type", "application/json")
        if token:
            request.add_header("authorization", f"Bearer {token}")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, data=data, timeout=120) as response:
                return response.status, response.headers, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.headers, error.read()


def expect(what: str, got, status: int) -> bytes:
    if got[0] != status:
        raise SystemExit(f"check-metrics drive: {what}: expected HTTP {status}, got {got[0]}: {got[2][:300]!r}")
    print(f"  {what}: HTTP {status}", file=sys.stderr)
    return got[2]


def drive(base: str, log_path: str) -> int:
    marker = f"metrics-check-{uuid.uuid4()}"
    api = Api(base, marker)
    password = f"pw-{uuid.uuid4()}"
    wrong = f"wrong-{uuid.uuid4()}"
    email = f"metrics-{uuid.uuid4().hex[:12]}@example.com"
    key = f"key-{uuid.uuid4()}"
    credentials = {"email": email, "password": password}

    # Signed up once, then replayed (IdempotentReplays).
    expect("signup", api.call("POST", "/signup", credentials, headers={"idempotency-key": key}), 201)
    _, headers, _ = api.call("POST", "/signup", credentials, headers={"idempotency-key": key})
    if headers.get("Idempotent-Replayed") != "true":
        raise SystemExit("check-metrics drive: the repeated signup was not replayed")
    token = json.loads(expect("login", api.call("POST", "/login", credentials), 200))["token"]
    # LoginFailures, then LoginThrottled (LOGIN_MAX_FAILURES_PER_EMAIL=2) for another account.
    victim = {"email": f"victim-{uuid.uuid4().hex[:12]}@example.com", "password": wrong}
    expect("wrong password", api.call("POST", "/login", victim), 401)
    expect("wrong password again", api.call("POST", "/login", victim), 401)
    expect("throttled", api.call("POST", "/login", victim), 429)

    # Redis refuses connections: every write and read fails open (CacheFailOpen).
    asset = {"id": "m1", "type": "insight", "name": "metrics", "content": "degraded"}
    expect("add without the cache", api.call("POST", "/favorites", asset, token=token, headers={"idempotency-key": f"{key}-add"}), 201)
    expect("add a second", api.call("POST", "/favorites", {**asset, "id": "m2"}, token=token), 201)
    expect("update without the cache", api.call("PATCH", "/favorites/m1", {"description": "d"}, token=token), 200)
    # The enrichment service refuses connections: the first list's call fails and opens the
    # circuit (ENRICHMENT_BREAKER_FAILURES=1); the next list finds it open.
    time.sleep(1.2)  # past the cache's cool-down, so the list's cache calls fail rather than skip
    for attempt in ("list", "list with the circuit open"):
        listed = json.loads(expect(attempt, api.call("GET", "/favorites", token=token), 200))
        if [f["id"] for f in listed["data"]] != ["m2", "m1"] or any("enrichment" in f for f in listed["data"]):
            raise SystemExit(f"check-metrics drive: {attempt}: unexpected list {listed}")
    expect("remove without the cache", api.call("DELETE", "/favorites/m2", token=token), 204)

    # Everything is logged by now (each answer's line and metrics are written before its end),
    # but the emulator copies the functions' output to its log on its own schedule: wait for
    # the last request's line, briefly.
    log = pathlib.Path(log_path)
    last = f"{marker}-{api.count}"
    deadline = time.monotonic() + 10
    while last not in log.read_text(errors="replace"):
        if time.monotonic() > deadline:
            raise SystemExit(f"check-metrics drive: the log {log} has no line of the last request ({last})")
        time.sleep(0.2)
    text = log.read_text(errors="replace")
    secrets = {
        "a user's password": password,
        "a wrong password": wrong,
        "an access token": token,
        "an Idempotency-Key": key,
        "the JWT key": os.environ["JWT_SECRET"],
        "the enrichment API key": os.environ["ENRICHMENT_API_KEY"],
        "the Redis password": os.environ["REDIS_PASSWORD"],
    }
    leaks = [what for what, secret in secrets.items() if secret in text]
    leaks += [f"a bcrypt hash ({m.group(0)}…)" for m in re.finditer(r"\$2[aby]\$\d\d\$", text)]
    leaks += [f"a JWT ({m.group(0)[:12]}…)" for m in re.finditer(r"eyJ[\w-]+\.eyJ[\w-]+\.", text)]
    if leaks:
        raise SystemExit(f"check-metrics drive: {log} holds {', '.join(leaks)}")
    print(f"check-metrics drive: {api.count} requests answered with Redis and enrichment down; no secret in {log.name}", file=sys.stderr)
    return 0


def main() -> int:
    if len(sys.argv) >= 3 and sys.argv[1] == "check":
        return check(sys.argv[2:])
    if len(sys.argv) == 4 and sys.argv[1] == "drive":
        return drive(sys.argv[2], sys.argv[3])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
