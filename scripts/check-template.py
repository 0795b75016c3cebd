#!/usr/bin/env python3
"""Checks template.yaml against the rest of the repository, offline. Run by scripts/infra-check.sh
with the project venv's python, which has aws-sam-cli and with it the SAM translator.

- every crate in functions/ is one SAM function built by cargo-lambda from its own binary, and
  every SAM function is one of them;
- the API routes, as SAM translates the functions' Api events into the REST API definition, are
  exactly the paths and methods of infra/openapi.yaml, and each goes to the same function as in
  the local router (Cargo.toml, [workspace.metadata.lambda.watch.router]);
- a function whose main.rs serves a streamed response (app::run_streaming) has a streamed
  integration (InvokeWithResponseStream URI, responseTransferMode STREAM), and no other has;
- each function may read exactly the secrets and DynamoDB tables its environment names;
- the dashboard body is JSON;
- every environment's parameter_overrides in samconfig.toml names template parameters and gives
  values they accept.

Usage: .venv/bin/python scripts/check-template.py [template.yaml]
"""
import json
import logging
import pathlib
import re
import sys
import tomllib

import boto3
import yaml
from samcli.yamlhelper import yaml_parse
from samtranslator.parser import parser
from samtranslator.translator.translator import Translator

ROOT = pathlib.Path(__file__).resolve().parent.parent
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
FUNCTION = "AWS::Serverless::Function"

# The translator warns about its own feature toggles on every run; that is not about our template.
logging.getLogger("samtranslator.feature_toggle").setLevel(logging.ERROR)

problems: list[str] = []


def problem(message: str) -> None:
    problems.append(message)


def unless_absent(value):
    """A value that is either there or AWS::NoValue under a condition, as if it were there:
    Fn::If [c, x, NoValue] gives x."""
    if isinstance(value, dict) and list(value) == ["Fn::If"]:
        branches = [b for b in value["Fn::If"][1:] if b != {"Ref": "AWS::NoValue"}]
        if len(branches) == 1:
            return unless_absent(branches[0])
    return value


def ref_name(value):
    """The resource or parameter a value points at: Ref X and GetAtt X.Arn give X; a Fn::If
    gives the tuple of its branches (one that may be absent counts as present); anything else
    is returned as is."""
    value = unless_absent(value)
    if isinstance(value, dict) and len(value) == 1:
        (key, arg), = value.items()
        if key == "Ref":
            return arg
        if key == "Fn::GetAtt":
            return arg[0] if isinstance(arg, list) else arg.split(".")[0]
        if key == "Fn::If":
            return tuple(ref_name(branch) for branch in arg[1:])
    return json.dumps(value, sort_keys=True)


def functions_in_repository() -> dict[str, dict]:
    """Crate directory name -> {"bin": package name, "streaming": bool}."""
    crates = {}
    for manifest in sorted((ROOT / "functions").glob("*/Cargo.toml")):
        package = tomllib.loads(manifest.read_text())["package"]["name"]
        main = manifest.parent / "src" / "main.rs"
        streaming = main.exists() and "run_streaming" in main.read_text()
        crates[manifest.parent.name] = {"bin": package, "streaming": streaming}
    return crates


def check_functions(template: dict) -> dict[str, str]:
    """Checks the functions' build metadata; returns logical id -> binary name."""
    crates = functions_in_repository()
    binaries = {}
    for logical_id, resource in template["Resources"].items():
        if resource.get("Type") != FUNCTION:
            continue
        metadata = resource.get("Metadata", {})
        binary = metadata.get("BuildProperties", {}).get("Binary")
        if metadata.get("BuildMethod") != "rust-cargolambda":
            problem(f"{logical_id}: Metadata.BuildMethod must be rust-cargolambda")
        code_uri = resource["Properties"].get("CodeUri")
        crate = pathlib.PurePosixPath(code_uri or "").name
        if crate not in crates:
            problem(f"{logical_id}: CodeUri {code_uri!r} is not a crate in functions/")
        elif binary != crates[crate]["bin"]:
            problem(f"{logical_id}: BuildProperties.Binary {binary!r}, but {code_uri} builds {crates[crate]['bin']!r}")
        binaries[logical_id] = binary
    missing = {c["bin"] for c in crates.values()} - set(binaries.values())
    for binary in sorted(missing):
        problem(f"functions/ has a crate building {binary!r} but template.yaml has no function for it")
    return binaries


def translate(template: dict) -> dict:
    """The CloudFormation template SAM makes of ours (CodeUri replaced, as `sam validate` does)."""
    template = json.loads(json.dumps(template))
    for resource in template["Resources"].values():
        if resource.get("Type") == FUNCTION:
            resource["Properties"]["CodeUri"] = "s3://bucket/key"
    translator = Translator(
        managed_policy_map=None,
        sam_parser=parser.Parser(),
        plugins=[],
        boto_session=boto3.session.Session(region_name="us-east-1"),
    )
    return translator.translate(sam_template=template, parameter_values={}, get_managed_policy_map=lambda: {})


def check_routes(translated: dict, binaries: dict[str, str]) -> str:
    """Checks the REST API's routes; returns a one-line summary."""
    apis = [r for r in translated["Resources"].values() if r["Type"] == "AWS::ApiGateway::RestApi"]
    if len(apis) != 1:
        problem(f"expected one REST API, found {len(apis)}")
        return "no routes"
    streaming = {c["bin"] for c in functions_in_repository().values() if c["streaming"]}
    deployed = {}
    for path, item in apis[0]["Properties"]["Body"]["paths"].items():
        for method, operation in item.items():
            if method not in HTTP_METHODS:
                continue
            route = f"{method.upper()} {path}"
            integration = operation.get("x-amazon-apigateway-integration", {})
            uri = integration.get("uri", {}).get("Fn::Sub", "")
            target = re.search(r"/functions/\$\{(\w+?)(?:Aliaslive)?(?:\.Arn)?\}/", uri)
            if integration.get("type") != "aws_proxy" or not target:
                problem(f"{route}: not a Lambda proxy integration: {integration}")
                continue
            binary = binaries.get(target.group(1), target.group(1))
            deployed[route] = binary
            streamed = (
                "/2021-11-15/functions/" in uri
                and uri.endswith("/response-streaming-invocations")
                and integration.get("responseTransferMode") == "STREAM"
            )
            buffered = "/2015-03-31/functions/" in uri and uri.endswith("/invocations") and "responseTransferMode" not in integration
            if binary in streaming and not streamed:
                problem(f"{route}: {binary} streams its response, but the integration is not streamed: {integration}")
            if binary not in streaming and not buffered:
                problem(f"{route}: {binary} answers buffered, but the integration is not a plain invocation: {integration}")

    spec = yaml.safe_load((ROOT / "infra/openapi.yaml").read_text())
    documented = {f"{m.upper()} {p}" for p, item in spec["paths"].items() for m in item if m in HTTP_METHODS}
    for route in sorted(documented - deployed.keys()):
        problem(f"{route}: in infra/openapi.yaml but not in template.yaml")
    for route in sorted(deployed.keys() - documented):
        problem(f"{route}: in template.yaml but not in infra/openapi.yaml")

    router = tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]["metadata"]["lambda"]["watch"]["router"]
    local = {f"{e['method'].upper()} {p}": e["function"] for p, entries in router.items() for e in entries}
    for route in sorted(deployed.keys() & local.keys()):
        if deployed[route] != local[route]:
            problem(f"{route}: template.yaml sends it to {deployed[route]}, the local router (Cargo.toml) to {local[route]}")
    for route in sorted(deployed.keys() ^ local.keys()):
        problem(f"{route}: in only one of template.yaml and the local router (Cargo.toml)")
    streamed = ", ".join(sorted(r for r, b in deployed.items() if b in streaming)) or "none"
    return f"{len(deployed)} routes, the same in infra/openapi.yaml and the local router; streamed: {streamed}"


def check_permissions(template: dict) -> None:
    """Secrets and tables named in a function's environment (*_SECRET_ARN, *_TABLE) are exactly
    the ones its policies let it read."""
    global_env = template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
    for logical_id, resource in template["Resources"].items():
        if resource.get("Type") != FUNCTION:
            continue
        props = resource["Properties"]
        env = {**global_env, **props.get("Environment", {}).get("Variables", {})}
        secrets_named = {ref_name(v) for k, v in env.items() if k.endswith("_SECRET_ARN")}
        tables_named = {ref_name(v) for k, v in env.items() if k.endswith("_TABLE")}
        secrets_allowed, tables_allowed = set(), set()
        for policy in props.get("Policies", []):
            policy = unless_absent(policy)
            if not isinstance(policy, dict):
                problem(f"{logical_id}: managed policy {policy!r}: name what it may read instead")
                continue
            if "AWSSecretsManagerGetSecretValuePolicy" in policy:
                secrets_allowed.add(ref_name(policy["AWSSecretsManagerGetSecretValuePolicy"]["SecretArn"]))
            for statement in policy.get("Statement", []):
                actions = statement.get("Action", [])
                actions = [actions] if isinstance(actions, str) else actions
                resources = statement.get("Resource", [])
                resources = resources if isinstance(resources, list) else [resources]
                if any(a.startswith("dynamodb:") for a in actions):
                    tables_allowed.update(ref_name(r) for r in resources)
                if any(a.startswith("secretsmanager:") for a in actions):
                    secrets_allowed.update(ref_name(r) for r in resources)
            unknown = set(policy) - {"AWSSecretsManagerGetSecretValuePolicy", "Statement"}
            if unknown:
                problem(f"{logical_id}: policy {sorted(unknown)}: extend scripts/check-template.py to check it")
        if secrets_named != secrets_allowed:
            problem(f"{logical_id}: environment names secrets {sorted(map(str, secrets_named))}, policies allow {sorted(map(str, secrets_allowed))}")
        if tables_named != tables_allowed:
            problem(f"{logical_id}: environment names tables {sorted(map(str, tables_named))}, policies allow {sorted(map(str, tables_allowed))}")


def check_dashboard(template: dict) -> None:
    for logical_id, resource in template["Resources"].items():
        if resource.get("Type") != "AWS::CloudWatch::Dashboard":
            continue
        body = resource["Properties"]["DashboardBody"]
        if isinstance(body, dict):
            body = body["Fn::Sub"]
            body = body[0] if isinstance(body, list) else body
        try:
            # Every ${...} stands in a string or for a number: 1 is valid in both places.
            json.loads(re.sub(r"\$\{[^}]+\}", "1", body))
        except json.JSONDecodeError as e:
            problem(f"{logical_id}: DashboardBody is not JSON: {e}")


def check_samconfig(template: dict) -> list[str]:
    """Checks each samconfig.toml environment's parameter overrides; returns the environments."""
    from samcli.cli.types import CfnParameterOverridesType

    parameters = template.get("Parameters", {})
    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    environments = []
    for env, commands in config.items():
        if not isinstance(commands, dict) or env == "version":
            continue
        overrides = commands.get("deploy", {}).get("parameters", {}).get("parameter_overrides")
        if overrides is None:
            continue
        environments.append(env)
        for name, value in CfnParameterOverridesType().convert(overrides, None, None).items():
            spec = parameters.get(name)
            if spec is None:
                problem(f"samconfig.toml [{env}]: {name} is not a parameter of the template")
                continue
            allowed = spec.get("AllowedValues")
            if allowed is not None and value not in [str(a) for a in allowed]:
                problem(f"samconfig.toml [{env}]: {name}={value} is not one of {allowed}")
            pattern = spec.get("AllowedPattern")
            if pattern and not re.fullmatch(pattern, value):
                problem(f"samconfig.toml [{env}]: {name}={value} does not match {pattern}")
            if spec.get("Type") == "Number":
                try:
                    number = float(value)
                except ValueError:
                    problem(f"samconfig.toml [{env}]: {name}={value} is not a number")
                    continue
                if "MinValue" in spec and number < float(spec["MinValue"]) or "MaxValue" in spec and number > float(spec["MaxValue"]):
                    problem(f"samconfig.toml [{env}]: {name}={value} is out of its range")
        required = {n for n, p in parameters.items() if "Default" not in p}
        given = set(CfnParameterOverridesType().convert(overrides, None, None))
        for name in sorted(required - given):
            problem(f"samconfig.toml [{env}]: the template needs {name} (it has no default)")
    return environments


def main() -> int:
    path = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "template.yaml")
    template = yaml_parse(path.read_text())
    binaries = check_functions(template)
    routes = check_routes(translate(template), binaries)
    check_permissions(template)
    check_dashboard(template)
    environments = check_samconfig(template)
    if problems:
        print(f"{path.name}: {len(problems)} problem(s):", file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        return 1
    print(f"{path.name}: {len(binaries)} functions, {routes}; permissions, dashboard and samconfig.toml ({', '.join(environments)}) check out")
    return 0


if __name__ == "__main__":
    sys.exit(main())
