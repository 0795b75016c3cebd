//! The template as CloudFormation receives it: `template.yaml` through the SAM transform
//! (aws-sam-translator, the SAM CLI's own, from `.venv`), then read for one deployment target:
//! the Lambda functions with their environment and role, the roles' policies, the REST API's
//! routes and gateway responses. Nothing here is a hand-kept list: what SAM generates (the
//! merged Globals, the expanded policy templates, the integration URIs) is what is read.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;

use crate::template::{Deployment, Template, scalar};

/// The SAM transform, as `sam deploy` runs it before CloudFormation sees the template. Local
/// `CodeUri`s become `s3://stack/<binary>` (the translator wants S3 locations), so that each
/// Lambda function's `Code.S3Key` names its binary.
const SAM_TRANSFORM: &str = r#"
import json, sys
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse
template = yaml_parse(open(sys.argv[1]).read())
for resource in template.get("Resources", {}).values():
    if resource.get("Type") == "AWS::Serverless::Function":
        binary = resource.get("Metadata", {}).get("BuildProperties", {}).get("Binary")
        resource["Properties"]["CodeUri"] = "s3://stack/" + str(binary)
class NoManagedPolicies:
    def load(self): return {}
print(json.dumps(transform(template, {}, NoManagedPolicies(), passthrough_metadata=True)))
"#;

/// API Gateway's integration timeout for a route that does not set its own.
const INTEGRATION_TIMEOUT: Duration = Duration::from_millis(29_000);

/// `template` through the SAM transform, with `python` (the `.venv`'s).
pub fn transform(python: &Path, template: &Path) -> Result<Template> {
    let output = Command::new(python)
        .arg("-c")
        .arg(SAM_TRANSFORM)
        .arg(template)
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .output()
        .with_context(|| format!("running the SAM transform with {}", python.display()))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default();
        bail!("the SAM transform of {} failed: {last}", template.display());
    }
    let doc = serde_json::from_slice(&output.stdout).context("reading the SAM transform's output")?;
    Ok(Template { doc })
}

/// A Lambda function as CloudFormation creates it.
#[derive(Debug, Clone)]
pub struct Function {
    pub logical_id: String,
    /// `Code.S3Key`: the binary.
    pub binary: String,
    /// The variables, intrinsics resolved (to stand-ins where the deployment has them).
    pub environment: BTreeMap<String, String>,
    /// The logical id of its IAM role.
    pub role: String,
    pub memory_mb: u64,
    pub timeout: Duration,
    /// `LoggingConfig.LogGroup`, resolved.
    pub log_group: Option<String>,
}

/// An IAM role as CloudFormation creates it, resolved.
#[derive(Debug, Clone)]
pub struct Role {
    pub logical_id: String,
    pub trust_policy: Value,
    /// (name, document) of each inline policy.
    pub policies: Vec<(String, Value)>,
    pub managed_policy_arns: Vec<String>,
}

/// A route of the REST API: a method on a path to a function.
#[derive(Debug, Clone)]
pub struct Route {
    /// Upper case.
    pub method: String,
    /// As the API declares it: `/favorites/{id}`.
    pub path: String,
    /// The logical id of the function its integration invokes.
    pub function: String,
    /// `responseTransferMode: STREAM`: the answer is streamed as the function writes it.
    pub streamed: bool,
    pub timeout: Duration,
}

/// An answer of API Gateway's own (`x-amazon-apigateway-gateway-responses`).
#[derive(Debug, Clone)]
pub struct GatewayResponse {
    pub status: Option<u16>,
    /// The `application/json` template.
    pub template: Option<String>,
}

impl GatewayResponse {
    /// From its status code and its templates by content type (`statusCode` and
    /// `responseTemplates` in the API's OpenAPI body, `StatusCode` and `ResponseTemplates` in
    /// the SAM template's `GatewayResponses`).
    pub fn read(status_code: &Value, templates: &Value) -> Self {
        Self {
            status: scalar(status_code).parse().ok(),
            template: templates["application/json"].as_str().map(str::to_string),
        }
    }
}

/// The REST API: its stage, routes and gateway responses.
#[derive(Debug, Clone, Default)]
pub struct RestApi {
    pub stage: String,
    pub routes: Vec<Route>,
    pub gateway_responses: BTreeMap<String, GatewayResponse>,
}

/// The resources of `kind` (condition true in this deployment): (logical id, properties resolved).
pub fn resources(template: &Template, deployment: &Deployment, kind: &str) -> Result<Vec<(String, Value)>> {
    let mut found = Vec::new();
    for (id, resource) in template.resources() {
        if resource["Type"] != kind {
            continue;
        }
        if let Some(condition) = resource["Condition"].as_str()
            && !deployment.is(condition)?
        {
            continue;
        }
        let properties = deployment
            .resolve(&resource["Properties"])
            .with_context(|| format!("{id}: resolving its properties"))?
            .unwrap_or_default();
        found.push((id.clone(), properties));
    }
    Ok(found)
}

pub fn functions(template: &Template, deployment: &Deployment) -> Result<Vec<Function>> {
    resources(template, deployment, "AWS::Lambda::Function")?
        .into_iter()
        .map(|(id, p)| {
            let role = p["Role"]
                .as_str()
                .and_then(|arn| arn.strip_prefix("role:"))
                .map(str::to_string)
                .ok_or_else(|| anyhow!("{id}: its Role is not a role of the template: {}", p["Role"]))?;
            Ok(Function {
                binary: scalar(&p["Code"]["S3Key"]),
                environment: p["Environment"]["Variables"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(name, value)| (name.clone(), scalar(value)))
                    .collect(),
                role,
                memory_mb: p["MemorySize"].as_u64().unwrap_or(128),
                timeout: Duration::from_secs(p["Timeout"].as_u64().unwrap_or(3)),
                log_group: p["LoggingConfig"]["LogGroup"].as_str().map(str::to_string),
                logical_id: id,
            })
        })
        .collect()
}

pub fn roles(template: &Template, deployment: &Deployment) -> Result<BTreeMap<String, Role>> {
    resources(template, deployment, "AWS::IAM::Role")?
        .into_iter()
        .map(|(id, p)| {
            let role = Role {
                logical_id: id.clone(),
                trust_policy: p["AssumeRolePolicyDocument"].clone(),
                policies: p["Policies"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|policy| (scalar(&policy["PolicyName"]), policy["PolicyDocument"].clone()))
                    .collect(),
                managed_policy_arns: p["ManagedPolicyArns"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(scalar)
                    .collect(),
            };
            Ok((id, role))
        })
        .collect()
}

/// The one REST API of the template, its routes pointing at functions by logical id.
pub fn rest_api(template: &Template, deployment: &Deployment) -> Result<RestApi> {
    let apis = resources(template, deployment, "AWS::ApiGateway::RestApi")?;
    let [(api_id, api)] = apis.as_slice() else {
        bail!("the stack serves one REST API; the template has {}", apis.len());
    };
    let stage = resources(template, deployment, "AWS::ApiGateway::Stage")?
        .into_iter()
        .find(|(_, stage)| stage["RestApiId"].as_str() == Some(&format!("ref:{api_id}")))
        .map(|(_, stage)| scalar(&stage["StageName"]))
        .ok_or_else(|| anyhow!("{api_id}: no stage"))?;
    let aliases: BTreeMap<String, String> = resources(template, deployment, "AWS::Lambda::Alias")?
        .into_iter()
        .filter_map(|(id, alias)| Some((id, scalar(&alias["FunctionName"]).strip_prefix("ref:")?.to_string())))
        .collect();
    let mut routes = Vec::new();
    for (path, methods) in api["Body"]["paths"].as_object().into_iter().flatten() {
        for (method, operation) in methods.as_object().into_iter().flatten() {
            let integration = &operation["x-amazon-apigateway-integration"];
            let uri = scalar(&integration["uri"]);
            let target = uri
                .split("/functions/")
                .nth(1)
                .and_then(|rest| rest.split('/').next())
                .and_then(|arn| arn.strip_prefix("ref:"))
                .ok_or_else(|| {
                    anyhow!(
                        "{} {path}: its integration invokes no function of the template: {uri}",
                        method.to_uppercase()
                    )
                })?;
            let function = aliases.get(target).cloned().unwrap_or_else(|| target.to_string());
            routes.push(Route {
                method: method.to_ascii_uppercase(),
                path: path.clone(),
                function,
                streamed: integration["responseTransferMode"] == "STREAM",
                timeout: integration["timeoutInMillis"]
                    .as_u64()
                    .map_or(INTEGRATION_TIMEOUT, Duration::from_millis),
            });
        }
    }
    let gateway_responses = api["Body"]["x-amazon-apigateway-gateway-responses"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(kind, response)| {
            let response = GatewayResponse::read(&response["statusCode"], &response["responseTemplates"]);
            (kind.clone(), response)
        })
        .collect();
    Ok(RestApi {
        stage,
        routes,
        gateway_responses,
    })
}
