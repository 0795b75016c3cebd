//! The deployed shape on 127.0.0.1 (`make stack`, and the end-to-end suite's second run in
//! `make test`): `template.yaml` through the SAM transform, its resources created as
//! CloudFormation would create them, but against local stand-ins, each function's binary under
//! AWS's own runtime emulator with exactly the environment and IAM permissions the template
//! gives it, and a REST API gateway in front.
//!
//! The stand-ins (started by scripts/lib.sh, found through the environment, see [`StandIns`]):
//! - Secrets Manager, DynamoDB, IAM and STS: a moto server enforcing IAM;
//! - the RDS instance and the RDS Proxy endpoint: one Postgres over TLS with password
//!   authentication (`DATABASE_CA_BUNDLE` is its CA); the instance's master role and database
//!   are made from the generated secret, as RDS makes them;
//! - ElastiCache: a Redis over TLS (`rediss://`, `REDIS_CA_BUNDLE` its CA).
//!
//! The stack refuses to start, in one line naming the function and the variable or
//! permission, when the template uses an intrinsic or a resource it has no stand-in for, or a
//! function fails its cold start; `migrate` runs once before the API opens.

mod aws;
mod aws_endpoint;
pub mod cli;
mod functions;
mod gateway;
pub mod transformed;

pub(crate) use gateway::unknown_route;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail, ensure};
use rand::Rng;
use serde_json::{Value, json};

pub use aws::{Admin, BOOTSTRAP_ACTIONS};
use aws::{Aws, RoleCredentials};
use functions::{Function, FunctionSpec};
use gateway::Gateway;
use transformed::RestApi;

use crate::database::{Owner, create_instance};
use crate::template::{Deployment, Target, is_placeholder, samconfig_targets, scalar};

/// Instances per function at most (Lambda's concurrency, scaled to one machine).
const CONCURRENCY: usize = 8;

/// Where the stand-ins are: what scripts/lib.sh exports when it starts them.
#[derive(Clone, Debug)]
pub struct StandIns {
    /// Admin URL of the TLS Postgres (`TEST_TLS_PG_ADMIN_URL`).
    pub postgres_admin_url: String,
    /// Its TCP port on 127.0.0.1 (`TEST_TLS_PG_PORT`) and CA (`TEST_TLS_PG_CA`).
    pub postgres_port: u16,
    pub postgres_ca: PathBuf,
    /// The TLS Redis on 127.0.0.1 (`TEST_TLS_REDIS_PORT`, `TEST_TLS_REDIS_CA`).
    pub redis_port: u16,
    pub redis_ca: PathBuf,
}

impl StandIns {
    pub fn from_env() -> Result<Self> {
        let var = |name: &str| {
            std::env::var(name)
                .with_context(|| format!("{name} is not set (scripts/lib.sh starts the stand-ins and sets it)"))
        };
        Ok(Self {
            postgres_admin_url: var("TEST_TLS_PG_ADMIN_URL")?,
            postgres_port: var("TEST_TLS_PG_PORT")?.parse().context("TEST_TLS_PG_PORT")?,
            postgres_ca: var("TEST_TLS_PG_CA")?.into(),
            redis_port: var("TEST_TLS_REDIS_PORT")?.parse().context("TEST_TLS_REDIS_PORT")?,
            redis_ca: var("TEST_TLS_REDIS_CA")?.into(),
        })
    }
}

/// What to deploy, and where the pieces are.
pub struct Options {
    /// `template.yaml`, or a copy.
    pub template: PathBuf,
    /// Parameter values on top of samconfig.toml's first environment.
    pub parameters: BTreeMap<String, String>,
    /// The stack's name (resource names start with it).
    pub name: String,
    /// `.venv/bin/python`, for the SAM transform.
    pub python: PathBuf,
    /// `aws-lambda-rie`.
    pub rie: PathBuf,
    /// Where the function binaries are.
    pub bin_dir: PathBuf,
    /// Where each function instance's log goes.
    pub log_dir: PathBuf,
    pub admin: Admin,
    pub stand_ins: StandIns,
}

/// A running stack: its API on `url`; stopped when dropped.
pub struct Stack {
    /// `http://127.0.0.1:<port>/<stage>`
    pub url: String,
    pub functions: BTreeMap<String, Arc<Function>>,
    /// What differs from AWS in this stack, one line each.
    pub differences: Vec<String>,
    /// The database instance's database, by the stand-in's admin URL (for a look with psql).
    pub database_url: Option<String>,
    /// The gateway and the functions' AWS endpoint.
    servers: Vec<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Drop for Stack {
    fn drop(&mut self) {
        for server in &self.servers {
            server.abort();
        }
    }
}

impl Stack {
    /// Every instance's log of the function `logical_id`, oldest first.
    pub fn logs(&self, logical_id: &str) -> Vec<PathBuf> {
        self.functions.get(logical_id).map(|f| f.logs()).unwrap_or_default()
    }

    /// Deploys the template onto the stand-ins and opens the API on `listener`.
    pub async fn start(options: &Options, listener: tokio::net::TcpListener) -> Result<Self> {
        let template = transformed::transform(&options.python, &options.template)?;
        let mut target = samconfig_targets(&crate::template::repo_root().join("samconfig.toml"))?
            .into_iter()
            .next()
            .context("samconfig.toml has no deploy parameters")?;
        target.stack = options.name.clone();
        target.parameters.extend(options.parameters.clone());
        let mut deployment = Deployment::new(&template, &target)?;
        let aws = Aws::new(&options.admin, &target.region).await;
        let mut differences = Vec::new();
        let endpoint_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let aws_endpoint = format!("http://127.0.0.1:{}", endpoint_listener.local_addr()?.port());
        let mut servers = vec![tokio::spawn(aws_endpoint::serve(
            endpoint_listener,
            options.admin.endpoint.clone(),
        ))];

        let database = create_resources(&template, &mut deployment, &target, &aws, options, &mut differences).await?;
        let functions = transformed::functions(&template, &deployment)?;
        let roles = transformed::roles(&template, &deployment)?;
        let api = transformed::rest_api(&template, &deployment)?;

        let mut running = BTreeMap::new();
        for function in &functions {
            let role = roles.get(&function.role).ok_or_else(|| {
                anyhow!(
                    "{}: its role {} is not in the template",
                    function.logical_id,
                    function.role
                )
            })?;
            let role_arn = aws.create_role(&physical_name(&target, &role.logical_id), role).await?;
            let credentials = aws.credentials(&role_arn, &function.logical_id).await?;
            let spec = spec(
                function,
                &target,
                options,
                &aws_endpoint,
                &credentials,
                &mut differences,
            )?;
            running.insert(
                function.logical_id.clone(),
                Function::new(spec, options.rie.clone(), CONCURRENCY),
            );
        }
        check_routes(&api, &running)?;

        // The deploy procedure (README "Deploy"): migrate once, then every function's cold start.
        let behind_api: Vec<&String> = running
            .keys()
            .filter(|id| api.routes.iter().any(|r| &&r.function == id))
            .collect();
        for (id, function) in &running {
            if !behind_api.contains(&id) {
                invoke_once(function, b"{}".to_vec(), "its invocation").await?;
            }
        }
        for id in &behind_api {
            let function = &running[*id];
            invoke_once(function, warm_up_event(&api.stage), "its cold start").await?;
        }

        let port = listener.local_addr()?.port();
        let gateway = Arc::new(Gateway {
            api: api.clone(),
            functions: running.clone(),
        });
        servers.push(tokio::spawn(gateway::serve(listener, gateway)));
        Ok(Self {
            url: format!("http://127.0.0.1:{port}/{}", api.stage),
            functions: running,
            differences,
            database_url: database
                .map(|name| crate::database::url_with_database(&options.stand_ins.postgres_admin_url, &name))
                .transpose()?,
            servers,
        })
    }
}

/// The template's secrets, tables, database instance and stand-in endpoints, created or
/// pointed at, each registered with the deployment so that its `Ref`s and `GetAtt`s resolve
/// to it. The database instance's database name, when there is one.
async fn create_resources(
    template: &crate::template::Template,
    deployment: &mut Deployment<'_>,
    target: &Target,
    aws: &Aws,
    options: &Options,
    differences: &mut Vec<String>,
) -> Result<Option<String>> {
    let stand_ins = &options.stand_ins;
    // What is a function of this stack, an alias, a role, a REST API (read, not created here).
    for (id, resource) in template.resources() {
        match resource["Type"].as_str().unwrap_or_default() {
            "AWS::Lambda::Function" | "AWS::Lambda::Alias" | "AWS::ApiGateway::RestApi" => {
                deployment.stand_in(id.clone(), format!("ref:{id}"));
                deployment.stand_in(format!("{id}.Arn"), format!("ref:{id}"));
            }
            "AWS::IAM::Role" => deployment.stand_in(format!("{id}.Arn"), format!("role:{id}")),
            _ => {}
        }
    }
    for (id, properties) in transformed::resources(template, deployment, "AWS::Logs::LogGroup")? {
        deployment.stand_in(id, scalar(&properties["LogGroupName"]));
    }
    // The endpoints: the proxy and the instance are the TLS Postgres, the cache the TLS Redis.
    let host = "127.0.0.1";
    for (kind, port) in [
        ("AWS::RDS::DBProxy", stand_ins.postgres_port),
        ("AWS::RDS::DBInstance", stand_ins.postgres_port),
        ("AWS::ElastiCache::ReplicationGroup", stand_ins.redis_port),
    ] {
        for (id, _) in template.resources().filter(|(_, r)| r["Type"] == kind) {
            for attribute in [
                "Endpoint",
                "Endpoint.Address",
                "PrimaryEndPoint.Address",
                "ReaderEndPoint.Address",
            ] {
                deployment.stand_in(format!("{id}.{attribute}"), host);
            }
            for attribute in ["Endpoint.Port", "PrimaryEndPoint.Port", "ReaderEndPoint.Port"] {
                deployment.stand_in(format!("{id}.{attribute}"), port.to_string());
            }
        }
    }
    for (id, properties) in transformed::resources(template, deployment, "AWS::DynamoDB::Table")? {
        let name = physical_name(target, &id);
        let arn = aws.create_table(&name, &properties).await?;
        deployment.stand_in(id.clone(), name);
        deployment.stand_in(format!("{id}.Arn"), arn);
    }
    // Secrets: generated as Secrets Manager generates them; one attached to a database
    // instance gets the instance's host, port and engine, and the instance is made from it.
    let attachments: BTreeMap<String, Value> =
        transformed::resources(template, deployment, "AWS::SecretsManager::SecretTargetAttachment")?
            .into_iter()
            .map(|(_, p)| (scalar(&p["SecretId"]), p))
            .collect();
    let mut database = None;
    for (id, properties) in transformed::resources(template, deployment, "AWS::SecretsManager::Secret")? {
        let mut value = match properties.get("SecretString") {
            Some(value) => scalar(value),
            None => generate_secret(&id, &properties["GenerateSecretString"])?,
        };
        let placeholder = deployment.secret_arn(&id);
        if let Some(attachment) = attachments.get(&placeholder) {
            let (attached, name) = attach_instance(template, deployment, &id, &value, attachment, options).await?;
            (value, database) = (attached, Some(name));
        }
        let arn = aws.create_secret(&physical_name(target, &id), &value).await?;
        deployment.stand_in(id, arn);
    }
    differences.push(format!(
        "RDS Proxy and the RDS instance: one Postgres over TLS on {host}:{} (no proxy: nothing pins, nothing multiplexes)",
        stand_ins.postgres_port
    ));
    differences.push(format!(
        "ElastiCache: one Redis over TLS on {host}:{}",
        stand_ins.redis_port
    ));
    differences.push(format!(
        "AWS APIs: moto at {} (its refusals of DynamoDB and Secrets Manager calls put in AWS's JSON), enforcing IAM actions; resources are checked offline (shared/tests/template.rs)",
        aws.endpoint()
    ));
    Ok(database)
}

/// The database instance the attachment names, made on the Postgres stand-in with the secret's
/// credentials (its `MasterUsername` and `DBName`); the secret's value with the instance's
/// host, port, engine and identifier added, as the attachment adds them; and the database.
async fn attach_instance(
    template: &crate::template::Template,
    deployment: &Deployment<'_>,
    secret_id: &str,
    value: &str,
    attachment: &Value,
    options: &Options,
) -> Result<(String, String)> {
    let instance_id = scalar(&attachment["TargetId"]);
    let (id, instance) = transformed::resources(template, deployment, "AWS::RDS::DBInstance")?
        .into_iter()
        .find(|(id, _)| instance_id.ends_with(&format!("-{id}-placeholder")) || instance_id == *id)
        .ok_or_else(|| {
            anyhow!("{secret_id}: its attachment targets {instance_id}, not a database instance of the template")
        })?;
    let mut secret: Value = serde_json::from_str(value).with_context(|| format!("{secret_id}: not JSON"))?;
    let dynamic = |text: &str| -> Result<String> {
        // `{{resolve:secretsmanager:<this secret>:SecretString:<key>}}`
        match text
            .strip_prefix("{{resolve:secretsmanager:")
            .and_then(|r| r.strip_suffix("}}"))
        {
            Some(reference) => {
                let key = reference.rsplit(':').next().unwrap_or_default();
                secret[key]
                    .as_str()
                    .map(str::to_string)
                    .ok_or_else(|| anyhow!("{id}: {text} names no key of {secret_id}"))
            }
            None => Ok(text.to_string()),
        }
    };
    let owner = Owner {
        role: dynamic(&scalar(&instance["MasterUsername"]))?,
        password: dynamic(&scalar(&instance["MasterUserPassword"]))?,
    };
    let database = scalar(&instance["DBName"]);
    create_instance(&options.stand_ins.postgres_admin_url, &database, &owner)
        .await
        .with_context(|| format!("{id}: creating database {database} on the Postgres stand-in"))?;
    secret["engine"] = json!("postgres");
    secret["host"] = json!("127.0.0.1");
    secret["port"] = json!(options.stand_ins.postgres_port);
    secret["dbInstanceIdentifier"] = json!(physical_name_of(&options.name, &id).to_ascii_lowercase());
    Ok((secret.to_string(), database))
}

/// A value as Secrets Manager's GenerateSecretString makes it (letters and digits, and
/// punctuation unless excluded), in the template's JSON under its key when it has one.
fn generate_secret(id: &str, spec: &Value) -> Result<String> {
    ensure!(
        spec.is_object(),
        "{id}: a secret with neither SecretString nor GenerateSecretString"
    );
    let length = spec["PasswordLength"].as_u64().unwrap_or(32) as usize;
    let mut alphabet: Vec<char> = ('a'..='z').chain('A'..='Z').chain('0'..='9').collect();
    if spec["ExcludePunctuation"] != true {
        alphabet.extend("!#$%&()*+,-.:;<=>?[]^_{|}~".chars());
    }
    let mut rng = rand::rng();
    let password: String = (0..length)
        .map(|_| alphabet[rng.random_range(0..alphabet.len())])
        .collect();
    match spec["SecretStringTemplate"].as_str() {
        None => Ok(password),
        Some(template) => {
            let mut value: Value =
                serde_json::from_str(template).with_context(|| format!("{id}: SecretStringTemplate is not JSON"))?;
            value[scalar(&spec["GenerateStringKey"])] = json!(password);
            Ok(value.to_string())
        }
    }
}

/// Everything an instance of `function` starts from: the template's variables, resolved;
/// the CA bundles the template declares empty for local stand-ins, pointed at theirs; and what
/// Lambda sets, with the role's credentials.
fn spec(
    function: &transformed::Function,
    target: &Target,
    options: &Options,
    aws_endpoint: &str,
    credentials: &RoleCredentials,
    differences: &mut Vec<String>,
) -> Result<FunctionSpec> {
    let id = &function.logical_id;
    let mut environment = BTreeMap::new();
    for (name, value) in &function.environment {
        if is_placeholder(value) {
            bail!("{id}: {name}={value}: the stack has no stand-in for what this refers to");
        }
        let value = match name.as_str() {
            "DATABASE_CA_BUNDLE" => options.stand_ins.postgres_ca.display().to_string(),
            "REDIS_CA_BUNDLE" => options.stand_ins.redis_ca.display().to_string(),
            // RDS Proxy listens on 5432 only; the template says so as a literal.
            "DATABASE_PORT" if value == "5432" => {
                let port = options.stand_ins.postgres_port.to_string();
                let line = format!("DATABASE_PORT: 5432 (RDS Proxy's only port) is {port} here");
                if !differences.contains(&line) {
                    differences.push(line);
                }
                port
            }
            _ => value.clone(),
        };
        environment.insert(name.clone(), value);
    }
    let binary = options.bin_dir.join(&function.binary);
    ensure!(
        binary.exists(),
        "{id}: its binary {} is missing (cargo build --workspace --bins)",
        binary.display()
    );
    let name = physical_name(target, id);
    let mut env: Vec<(String, String)> = environment.into_iter().collect();
    env.extend(
        [
            ("AWS_LAMBDA_FUNCTION_NAME", name.clone()),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_string()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", function.memory_mb.to_string()),
            ("AWS_LAMBDA_FUNCTION_TIMEOUT", function.timeout.as_secs().to_string()),
            (
                "AWS_LAMBDA_LOG_GROUP_NAME",
                function.log_group.clone().unwrap_or(format!("/aws/lambda/{name}")),
            ),
            ("AWS_REGION", target.region.clone()),
            ("AWS_DEFAULT_REGION", target.region.clone()),
            ("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023".to_string()),
            ("_HANDLER", "bootstrap".to_string()),
            ("TZ", ":UTC".to_string()),
            ("LANG", "en_US.UTF-8".to_string()),
            ("PATH", "/usr/local/bin:/usr/bin:/bin".to_string()),
            ("AWS_ACCESS_KEY_ID", credentials.access_key_id.clone()),
            ("AWS_SECRET_ACCESS_KEY", credentials.secret_access_key.clone()),
            ("AWS_SESSION_TOKEN", credentials.session_token.clone()),
            // Not set by Lambda: where AWS's endpoints are, here.
            ("AWS_ENDPOINT_URL", aws_endpoint.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v)),
    );
    Ok(FunctionSpec {
        logical_id: id.clone(),
        binary,
        environment: env,
        log_dir: options.log_dir.clone(),
    })
}

/// Every route goes to a function of the stack.
fn check_routes(api: &RestApi, functions: &BTreeMap<String, Arc<Function>>) -> Result<()> {
    for route in &api.routes {
        ensure!(
            functions.contains_key(&route.function),
            "{} {}: its integration invokes {}, which is not a function of the template",
            route.method,
            route.path,
            route.function
        );
    }
    Ok(())
}

/// One invocation that must not fail; else the function's last log lines say why.
async fn invoke_once(function: &Arc<Function>, event: Vec<u8>, what: &str) -> Result<()> {
    let id = &function.spec.logical_id;
    let (mut busy, answer) = tokio::time::timeout(Duration::from_secs(300), function.invoke(event))
        .await
        .map_err(|_| anyhow!("{id}: {what} did not end within 300 s"))??;
    let failed = answer.headers().contains_key("x-amz-function-error");
    let body = answer.bytes().await.unwrap_or_default();
    busy.finished();
    let error: Option<Value> = serde_json::from_slice(&body).ok();
    let error_type = error.as_ref().and_then(|e| e["errorType"].as_str().map(str::to_string));
    if failed || error_type.is_some() {
        let log = busy.log();
        let reason = why_it_failed(&log).unwrap_or_else(|| String::from_utf8_lossy(&body).to_string());
        bail!("{id} failed {what}: {reason} (log: {})", log.display());
    }
    Ok(())
}

/// The function's own last error in its log (its JSON lines, not the emulator's): what a
/// person reads in CloudWatch, as `message: error`.
fn why_it_failed(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines().rev().find_map(|line| {
        let entry: Value = serde_json::from_str(line).ok()?;
        (entry["level"] == "ERROR").then(|| format!("{}: {}", scalar(&entry["message"]), scalar(&entry["error"])))
    })
}

/// A request no route of ours answers with anything but a 404: enough to run a function's
/// cold start.
fn warm_up_event(stage: &str) -> Vec<u8> {
    json!({
        "resource": "/{proxy+}",
        "path": "/__stack-warm-up",
        "httpMethod": "GET",
        "headers": {"user-agent": "stack warm-up"},
        "multiValueHeaders": {"user-agent": ["stack warm-up"]},
        "queryStringParameters": null,
        "multiValueQueryStringParameters": null,
        "pathParameters": null,
        "stageVariables": null,
        "requestContext": {
            "resourcePath": "/{proxy+}", "httpMethod": "GET", "path": format!("/{stage}/__stack-warm-up"),
            "stage": stage, "requestId": uuid::Uuid::new_v4().to_string(), "accountId": crate::template::ACCOUNT,
            "apiId": "local", "protocol": "HTTP/1.1", "identity": {"sourceIp": "127.0.0.1"},
        },
        "body": null,
        "isBase64Encoded": false,
    })
    .to_string()
    .into_bytes()
}

/// A resource's name as CloudFormation makes it when the template names none: the stack's
/// name, the logical id, a random suffix.
fn physical_name(target: &Target, logical_id: &str) -> String {
    physical_name_of(&target.stack, logical_id)
}

fn physical_name_of(stack: &str, logical_id: &str) -> String {
    let suffix: String = uuid::Uuid::new_v4().simple().to_string()[..12].to_ascii_uppercase();
    format!("{stack}-{logical_id}-{suffix}")
}
