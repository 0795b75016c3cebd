//! Every function started the way template.yaml deploys it: with exactly the environment the
//! template gives it (samconfig.toml's first environment: the Globals plus its own variables),
//! its intrinsics resolved to local stand-ins instead of AWS's resources, and nothing else but
//! what Lambda itself sets; then asked what a user asks of it, in the order of a deploy
//! (`migrate` first) and a first session (sign up, log in, add, read, change, list, remove,
//! leave).
//!
//! The stand-ins: the database secret (the JSON RDS writes) and the generated JWT key in moto's
//! Secrets Manager, both DynamoDB tables in moto, a private Postgres over TLS with password
//! authentication for both the proxy's and the instance's endpoint, with a database of its own
//! for `DatabaseName` (its CA in
//! `DATABASE_CA_BUNDLE`, which the template declares empty for this), and the test Redis for
//! ElastiCache (without TLS: the one difference from the template, which says `rediss://`).
//! Needs what `make test` starts: AWS_ENDPOINT_URL, TEST_TLS_PG_*, TEST_REDIS_URL.

use std::collections::BTreeMap;
use std::time::Duration;

use e2e::database::{Owner, TestDatabase};
use e2e::events::{bearer, both, event, favorite_path};
use e2e::runtime_api::{FunctionProcess, RuntimeApi};
use e2e::template::{Deployment, Template, repo_root, samconfig_targets};
use serde_json::{Value, json};

const STARTUP: Duration = Duration::from_secs(60);

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name}: run `make test`"))
}

#[tokio::test]
async fn every_function_starts_from_its_template_environment_and_answers() {
    let template = Template::load(&repo_root().join("template.yaml")).unwrap();
    let target = samconfig_targets(&repo_root().join("samconfig.toml"))
        .unwrap()
        .remove(0);
    let deployment = Deployment::new(&template, &target).unwrap();

    let owner = Owner::generate("deployed");
    let database = TestDatabase::create(&var("TEST_TLS_PG_ADMIN_URL"), "favorites_deployed", Some(owner.clone()))
        .await
        .unwrap();
    let port = var("TEST_TLS_PG_PORT");
    let secret = json!({
        "engine": "postgres", "username": owner.role, "password": owner.password,
        "host": "127.0.0.1", "port": port.parse::<u16>().unwrap(), "dbname": database.name,
    });
    let prefix = format!("favorites-deployed-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let resources = e2e::aws::create(&prefix, &uuid::Uuid::new_v4().simple().to_string(), Some(&secret))
        .await
        .unwrap();
    let stand_ins: BTreeMap<String, String> = [
        (
            deployment.secret_arn("DatabaseSecret"),
            resources.database_secret_arn.clone().unwrap(),
        ),
        (deployment.secret_arn("JwtSecret"), resources.jwt_secret_arn.clone()),
        (
            deployment.table_name("IdempotencyTable"),
            resources.idempotency_table.clone(),
        ),
        (
            deployment.table_name("LoginThrottleTable"),
            resources.login_throttle_table.clone(),
        ),
    ]
    .into();
    let (ca, redis) = (var("TEST_TLS_PG_CA"), var("TEST_REDIS_URL"));
    let environment = |function: &e2e::template::DeployedFunction| -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = function
            .environment
            .iter()
            .map(|(name, value)| {
                let value = match name.as_str() {
                    "DATABASE_HOST" => "127.0.0.1".to_string(),
                    "DATABASE_PORT" => port.clone(),
                    "DATABASE_NAME" => database.name.clone(),
                    "DATABASE_CA_BUNDLE" => ca.clone(),
                    "REDIS_URL" => redis.clone(),
                    _ => stand_ins.get(value).cloned().unwrap_or_else(|| value.clone()),
                };
                (name.clone(), value)
            })
            .collect();
        for (name, value) in &env {
            assert!(
                !e2e::template::is_placeholder(value),
                "{}: {name}={value} has no stand-in",
                function.logical_id
            );
        }
        // What Lambda sets besides the template's variables; AWS_ENDPOINT_URL stands for AWS's
        // own endpoints (moto), with its credentials.
        for name in [
            "AWS_ENDPOINT_URL",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
        ] {
            if let Ok(value) = std::env::var(name) {
                env.push((name.into(), value));
            }
        }
        env.push(("AWS_REGION".into(), "us-east-1".into()));
        env
    };

    let functions: BTreeMap<String, e2e::template::DeployedFunction> = deployment
        .functions()
        .unwrap()
        .into_iter()
        .map(|f| (f.binary.clone().unwrap(), f))
        .collect();
    let email = format!("{prefix}@example.com");
    let credentials = json!({"body": {"email": email, "password": "deployed password"}});
    let mut token = String::new();
    let mut answered = Vec::new();
    for binary in [
        "migrate",
        "signup",
        "login",
        "add-favorite",
        "get-favorite",
        "update-favorite",
        "list-favorites",
        "remove-favorite",
        "delete-account",
        "health",
    ] {
        let function = &functions[binary];
        let env = environment(function);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let runtime = RuntimeApi::start().await;
        let process = FunctionProcess::start(binary, &runtime, &env);
        let auth = bearer(&token);
        let chart = favorite_path("fixture-chart");
        let (request, expected) = match binary {
            "migrate" => (b"{}".to_vec(), None),
            "signup" => (event("signup/valid-201.json", credentials.clone()).unwrap(), Some(201)),
            "login" => (event("login/valid-200.json", credentials.clone()).unwrap(), Some(200)),
            "add-favorite" => (event("add-favorite/chart-201.json", auth).unwrap(), Some(201)),
            "get-favorite" => (
                event("get-favorite/missing-404.json", both(auth, chart)).unwrap(),
                Some(200),
            ),
            "update-favorite" => (
                event(
                    "update-favorite/missing-404.json",
                    both(both(auth, chart), json!({"body": {"description": "deployed"}})),
                )
                .unwrap(),
                Some(200),
            ),
            "list-favorites" => (event("list-favorites/first-page-200.json", auth).unwrap(), Some(200)),
            "remove-favorite" => (
                event("remove-favorite/missing-404.json", both(auth, chart)).unwrap(),
                Some(204),
            ),
            "delete-account" => (
                event(
                    "delete-account/wrong-password-401.json",
                    both(auth, json!({"body": {"password": "deployed password"}})),
                )
                .unwrap(),
                Some(204),
            ),
            _ => (event("health/ok-200.json", json!({})).unwrap(), Some(200)),
        };
        let answer = match runtime.call(request, STARTUP).await {
            Ok(answer) => answer,
            Err(e) => panic!("{binary}: {e:#}\n{:#?}", process.last_lines(20)),
        };
        assert!(
            !answer.error,
            "{binary} failed: {}\n{:#?}",
            String::from_utf8_lossy(&answer.body),
            process.last_lines(20)
        );
        assert_eq!(
            answer.status(),
            expected,
            "{binary}: {}\n{:#?}",
            String::from_utf8_lossy(&answer.http_body()),
            process.last_lines(20)
        );
        if binary == "login" {
            let body: Value = serde_json::from_slice(&answer.http_body()).unwrap();
            token = body["token"].as_str().unwrap().to_string();
        }
        answered.push(binary);
    }
    assert_eq!(answered.len(), functions.len(), "every function of the template, once");
    database.drop_now().await.unwrap();
}
