//! template.yaml and the code, checked against each other, offline.
//!
//! For every deployment target of samconfig.toml (and the enrichment variants of the first),
//! every function's configuration is built from exactly the environment the template gives it
//! (its Globals plus its own `Environment`, intrinsics resolved to placeholders shaped like AWS's
//! values), recording which variables it reads. A function fails the check when it cannot start
//! there, when the template gives it a variable it never reads, when it uses a secret or table
//! its policies do not allow, or when its policies allow a Secrets Manager or DynamoDB action it
//! never takes. Also: every crate in functions/ is one function of the template; the routes are
//! the same in the template, infra/openapi.yaml and the local router (Cargo.toml), streamed
//! where the function streams; the dashboard is JSON; samconfig.toml's values are accepted by
//! the template's parameters.
//!
//! The last test changes the template in the ways these checks exist for and expects each to
//! be reported.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use e2e::template::{DeployedFunction, Deployment, Target, Template, read_yaml, repo_root, samconfig_targets};
use serde_json::{Value, json};
use shared::config::{Recording, ResourceKind};
use shared::functions::{ALL, Described};
use shared::lambda::READ_BY_LIBRARIES;
use shared::runtime::ResponseMode;

const HTTP_METHODS: &[&str] = &["get", "put", "post", "delete", "options", "head", "patch", "trace"];

fn template() -> Template {
    Template::load(&repo_root().join("template.yaml")).unwrap()
}

/// samconfig.toml's targets, and the first with enrichment on (the generated key secret, then a
/// key secret the operator gives): the template's conditional variables and policies both ways.
fn targets() -> Vec<Target> {
    let mut targets = samconfig_targets(&repo_root().join("samconfig.toml")).unwrap();
    assert!(
        !targets.is_empty(),
        "samconfig.toml has no environment with deploy parameters"
    );
    let base = targets[0].clone();
    let enriched = |name: &str, key: &str| {
        let mut target = base.clone();
        target.name = format!("{} with enrichment, {name}", base.name);
        target
            .parameters
            .insert("EnrichmentUrl".into(), "https://enrichment.example.com/v1".into());
        target.parameters.insert("EnrichmentApiKeySecretArn".into(), key.into());
        target
    };
    targets.push(enriched("generated key", ""));
    targets.push(enriched(
        "given key",
        "arn:aws:secretsmanager:eu-west-1:123456789012:secret:partner-key-AbCdEf",
    ));
    targets
}

/// Every problem of `template` against the code, for every target.
fn problems(template: &Template) -> Vec<String> {
    let mut problems = Vec::new();
    for target in targets() {
        let deployment = match Deployment::new(template, &target) {
            Ok(deployment) => deployment,
            Err(e) => {
                problems.push(format!("{e:#}"));
                continue;
            }
        };
        match deployment.functions() {
            Ok(functions) => {
                for function in &functions {
                    function_problems(&deployment, function, &mut problems);
                }
                route_problems(&target, &functions, &mut problems);
            }
            Err(e) => problems.push(format!("{e:#}")),
        }
    }
    problems.extend(crate_problems(template));
    problems.extend(dashboard_problems(template));
    problems.dedup();
    problems
}

fn described(binary: &str) -> Option<&'static Described> {
    ALL.iter().find(|d| d.name == binary)
}

/// One function's environment and permissions in one target.
fn function_problems(deployment: &Deployment, function: &DeployedFunction, problems: &mut Vec<String>) {
    let at = format!("{} ({})", function.logical_id, deployment.target.name);
    let Some(described) = function.binary.as_deref().and_then(described) else {
        problems.push(format!(
            "{at}: binary {:?} is none of shared::functions::ALL",
            function.binary
        ));
        return;
    };
    let env: BTreeMap<String, String> = function.environment.clone();
    let recording = Recording::new(&env);
    let resources = match (described.resources)(&recording) {
        Ok(resources) => resources,
        Err(e) => {
            problems.push(format!("{at}: cannot start with the template's environment: {e}"));
            return;
        }
    };
    let mut read = recording.read();
    if described.api.is_some() {
        for variable in READ_BY_LIBRARIES {
            if !env.contains_key(*variable) {
                problems.push(format!(
                    "{at}: needs {variable} (read by lambda_http), the template does not give it"
                ));
            }
            read.insert(variable.to_string());
        }
    }
    for variable in env.keys().filter(|v| !read.contains(*v)) {
        problems.push(format!(
            "{at}: the template gives {variable}, which the function never reads"
        ));
    }

    for policy in &function.unread_policies {
        problems.push(format!(
            "{at}: policy {policy}: not a shape this check reads; name what it allows"
        ));
    }
    let mut used = BTreeSet::new();
    for resource in &resources {
        let arn = match resource.kind {
            ResourceKind::Secret => resource.id.clone(),
            ResourceKind::Table => deployment.table_arn(&resource.id),
        };
        for action in resource.actions {
            used.insert((action.to_string(), arn.clone()));
            if !function.permissions.contains(&(action.to_string(), arn.clone())) {
                problems.push(format!(
                    "{at}: uses {} ({arn}) with {action}, which no policy of it allows",
                    resource.variable
                ));
            }
        }
    }
    for (action, arn) in &function.permissions {
        let ours = action.starts_with("secretsmanager:") || action.starts_with("dynamodb:");
        if ours && !used.contains(&(action.clone(), arn.clone())) {
            problems.push(format!(
                "{at}: its policies allow {action} on {arn}, which it never does"
            ));
        }
    }
}

/// The routes of the template against infra/openapi.yaml, the local router and streaming.
fn route_problems(target: &Target, functions: &[DeployedFunction], problems: &mut Vec<String>) {
    let mut deployed = BTreeMap::new();
    for function in functions {
        let binary = function.binary.clone().unwrap_or_default();
        let response = described(&binary).and_then(|d| d.api.as_ref()).map(|api| api.response);
        if response.is_some() && function.routes.is_empty() {
            problems.push(format!("{}: serves HTTP but has no Api event", function.logical_id));
        }
        for route in &function.routes {
            let streams = response == Some(ResponseMode::Streaming);
            if response.is_none() {
                problems.push(format!(
                    "{}: {route}: the function is not behind the API",
                    function.logical_id
                ));
            } else if route.streamed != streams {
                problems.push(format!(
                    "{} ({}): {route}: the function {}, but the route {}",
                    function.logical_id,
                    target.name,
                    if streams {
                        "streams its answers"
                    } else {
                        "answers buffered"
                    },
                    if route.streamed {
                        "is RESPONSE_STREAM"
                    } else {
                        "is not RESPONSE_STREAM"
                    },
                ));
            }
            deployed.insert(route.to_string(), binary.clone());
        }
    }
    let documented = contract_routes();
    for route in documented.difference(&deployed.keys().cloned().collect()) {
        problems.push(format!("{route}: in infra/openapi.yaml but not in template.yaml"));
    }
    for route in deployed.keys().filter(|r| !documented.contains(*r)) {
        problems.push(format!("{route}: in template.yaml but not in infra/openapi.yaml"));
    }
    let local = local_router();
    for (route, binary) in &deployed {
        match local.get(route) {
            Some(local) if local != binary => problems.push(format!(
                "{route}: template.yaml sends it to {binary}, the local router (Cargo.toml) to {local}"
            )),
            None => problems.push(format!(
                "{route}: in template.yaml, not in the local router (Cargo.toml)"
            )),
            _ => {}
        }
    }
    for route in local.keys().filter(|r| !deployed.contains_key(*r)) {
        problems.push(format!(
            "{route}: in the local router (Cargo.toml), not in template.yaml"
        ));
    }
}

/// `GET /favorites`, … as infra/openapi.yaml documents them.
fn contract_routes() -> BTreeSet<String> {
    let spec = read_yaml(&repo_root().join("infra/openapi.yaml")).unwrap();
    let mut routes = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if HTTP_METHODS.contains(&method.as_str()) {
                routes.insert(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    routes
}

/// Route → binary of `cargo lambda watch` (Cargo.toml's `[workspace.metadata.lambda.watch.router]`).
fn local_router() -> BTreeMap<String, String> {
    let manifest: toml::Table =
        toml::from_str(&std::fs::read_to_string(repo_root().join("Cargo.toml")).unwrap()).unwrap();
    let router = &manifest["workspace"]["metadata"]["lambda"]["watch"]["router"];
    let mut routes = BTreeMap::new();
    for (path, entries) in router.as_table().unwrap() {
        for entry in entries.as_array().unwrap() {
            let method = entry["method"].as_str().unwrap().to_uppercase();
            routes.insert(
                format!("{method} {path}"),
                entry["function"].as_str().unwrap().to_string(),
            );
        }
    }
    routes
}

/// Every crate in functions/ is one function of the template, built from its own binary.
fn crate_problems(template: &Template) -> Vec<String> {
    let mut problems = Vec::new();
    let mut crates = BTreeMap::new();
    for entry in std::fs::read_dir(repo_root().join("functions")).unwrap() {
        let dir = entry.unwrap().path();
        let Ok(text) = std::fs::read_to_string(dir.join("Cargo.toml")) else {
            continue;
        };
        let manifest: toml::Table = toml::from_str(&text).unwrap();
        let name = manifest["package"]["name"].as_str().unwrap().to_string();
        crates.insert(dir.file_name().unwrap().to_string_lossy().to_string(), name);
    }
    let mut binaries = BTreeSet::new();
    for id in template.function_ids() {
        let resource = &template.doc["Resources"][&id];
        let binary = resource["Metadata"]["BuildProperties"]["Binary"]
            .as_str()
            .unwrap_or_default();
        if resource["Metadata"]["BuildMethod"] != "rust-cargolambda" {
            problems.push(format!("{id}: Metadata.BuildMethod must be rust-cargolambda"));
        }
        let code_uri = resource["Properties"]["CodeUri"].as_str().unwrap_or_default();
        let dir = Path::new(code_uri).file_name().map(|d| d.to_string_lossy().to_string());
        match dir.as_ref().and_then(|d| crates.get(d)) {
            None => problems.push(format!("{id}: CodeUri {code_uri:?} is not a crate in functions/")),
            Some(package) if package != binary => problems.push(format!(
                "{id}: BuildProperties.Binary {binary:?}, but {code_uri} builds {package:?}"
            )),
            Some(_) => {}
        }
        binaries.insert(binary.to_string());
    }
    for package in crates.values().filter(|p| !binaries.contains(*p)) {
        problems.push(format!(
            "functions/ has a crate building {package:?}, template.yaml no function for it"
        ));
    }
    for function in ALL.iter().filter(|f| !binaries.contains(f.name)) {
        problems.push(format!(
            "shared::functions::ALL has {:?}, template.yaml no function for it",
            function.name
        ));
    }
    problems
}

/// Each dashboard body is JSON once its `${…}` are substituted, and each of its and the
/// alarms' custom metrics names one function of the template (which metrics the functions
/// print is the lifecycle test's business).
fn dashboard_problems(template: &Template) -> Vec<String> {
    template
        .custom_metrics(shared::metrics::NAMESPACE, shared::metrics::DIMENSION)
        .err()
        .map(|e| format!("{e:#}"))
        .into_iter()
        .collect()
}

#[test]
fn every_function_starts_from_the_template_s_environment_with_exactly_the_permissions_it_uses() {
    let problems = problems(&template());
    assert!(
        problems.is_empty(),
        "template.yaml and the code disagree ({} problem(s)):\n  - {}",
        problems.len(),
        problems.join("\n  - ")
    );
}

#[test]
fn samconfig_gives_values_the_template_accepts() {
    let template = template();
    let mut problems = Vec::new();
    for target in samconfig_targets(&repo_root().join("samconfig.toml")).unwrap() {
        for (name, value) in &target.parameters {
            let Some(spec) = template.parameters().get(name) else {
                problems.push(format!("{}: {name} is not a parameter of the template", target.name));
                continue;
            };
            if let Some(allowed) = spec["AllowedValues"].as_array()
                && !allowed.iter().any(|a| e2e::template::scalar(a) == *value)
            {
                problems.push(format!("{}: {name}={value} is not one of {allowed:?}", target.name));
            }
            if let Some(pattern) = spec["AllowedPattern"].as_str()
                && !regex_lite::Regex::new(&format!("^(?:{pattern})$"))
                    .unwrap()
                    .is_match(value)
            {
                problems.push(format!("{}: {name}={value} does not match {pattern}", target.name));
            }
            if spec["Type"] == "Number" {
                let Ok(number) = value.parse::<f64>() else {
                    problems.push(format!("{}: {name}={value} is not a number", target.name));
                    continue;
                };
                let bound = |key: &str| spec[key].as_f64().or_else(|| spec[key].as_str()?.parse().ok());
                if bound("MinValue").is_some_and(|min| number < min)
                    || bound("MaxValue").is_some_and(|max| number > max)
                {
                    problems.push(format!("{}: {name}={value} is out of its range", target.name));
                }
            }
        }
        if let Err(e) = Deployment::new(&template, &target) {
            problems.push(format!("{e:#}"));
        }
    }
    assert!(problems.is_empty(), "samconfig.toml:\n  - {}", problems.join("\n  - "));
}

/// The check finds what it is for: each change below to a copy of the template is reported.
#[test]
fn the_check_reports_each_kind_of_disagreement() {
    let original = template();
    assert!(problems(&original).is_empty(), "the template itself must pass first");
    type Change = fn(&mut Value);
    let cases: Vec<(&str, &str, Change, &str)> = vec![
        (
            "a variable the function needs, taken away",
            "LoginFunction",
            |f| {
                f["Environment"]["Variables"]
                    .as_object_mut()
                    .unwrap()
                    .remove("JWT_SECRET_ARN");
            },
            "LoginFunction (samconfig.toml [dev]): cannot start",
        ),
        (
            "a variable no one reads, given",
            "HealthFunction",
            |f| {
                f["Environment"] = json!({ "Variables": { "CACHE_TTL_SECONDS": "60" } });
            },
            "gives CACHE_TTL_SECONDS, which the function never reads",
        ),
        (
            "the statement for a table, taken away",
            "SignupFunction",
            |f| {
                f["Policies"]
                    .as_array_mut()
                    .unwrap()
                    .retain(|p| p.get("Statement").is_none());
            },
            "uses IDEMPOTENCY_TABLE",
        ),
        (
            "the policy for a secret, taken away",
            "GetFavoriteFunction",
            |f| {
                f["Policies"].as_array_mut().unwrap().remove(1);
            },
            "uses JWT_SECRET_ARN",
        ),
        (
            "an action the function never takes, allowed",
            "LoginFunction",
            |f| {
                f["Policies"][2]["Statement"][0]["Action"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!("dynamodb:Scan"));
            },
            "allow dynamodb:Scan",
        ),
        (
            "a streamed route made buffered",
            "ListFavoritesFunction",
            |f| {
                f["Events"]["Api"]["Properties"]
                    .as_object_mut()
                    .unwrap()
                    .remove("ResponseTransferMode");
            },
            "GET /favorites: the function streams its answers",
        ),
        (
            "a route moved",
            "HealthFunction",
            |f| {
                f["Events"]["Api"]["Properties"]["Path"] = json!("/healthz");
            },
            "GET /healthz: in template.yaml but not in infra/openapi.yaml",
        ),
    ];
    for (what, id, change, expected) in cases {
        let mut changed = original.clone();
        change(&mut changed.doc["Resources"][id]["Properties"]);
        let found = problems(&changed);
        assert!(
            found.iter().any(|p| p.contains(expected)),
            "{what} ({id}): expected a problem containing {expected:?}, got:\n  - {}",
            found.join("\n  - ")
        );
    }
}
