//! `template.yaml` as CloudFormation would deploy it, offline: the template read with its
//! short-form intrinsics (`!Ref`, `!Sub`, `!If`, …) in their long form, and, for one deployment
//! target (a `samconfig.toml` environment's parameters), every function with the environment,
//! permissions and routes it would get, intrinsics resolved to placeholder values shaped like
//! the ones AWS gives (a secret's ARN, a table's name and ARN, an endpoint's host and port).
//!
//! The placeholders name the resource they stand for, so that a value found in a function's
//! environment can be matched with the statements of its policies.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Map, Value, json};

pub const ACCOUNT: &str = "123456789012";
/// What marks the placeholders this model makes for a secret's ARN, a table's name, any other
/// resource's reference and an endpoint's host: [`is_placeholder`] finds them.
const SECRET_SUFFIX: &str = "AbCdEf";
const TABLE_SUFFIX: &str = "1A2B3C4D5E6F";
const PLACEHOLDER: &str = "placeholder";

/// Whether `value` holds a placeholder of this model (that a stand-in should have replaced).
pub fn is_placeholder(value: &str) -> bool {
    [SECRET_SUFFIX, TABLE_SUFFIX, PLACEHOLDER]
        .iter()
        .any(|mark| value.contains(mark))
}
const FUNCTION: &str = "AWS::Serverless::Function";

/// The repository's root (this crate lives in `tests/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the repository")
        .to_path_buf()
}

/// A YAML file (CloudFormation's short-form tags included) as JSON.
pub fn read_yaml(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let yaml: serde_norway::Value =
        serde_norway::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    long_form(yaml)
}

/// The template: its document, intrinsics in long form (`{"Ref": …}`, `{"Fn::Sub": …}`).
#[derive(Clone)]
pub struct Template {
    pub doc: Value,
}

impl Template {
    pub fn load(path: &Path) -> Result<Self> {
        Ok(Self { doc: read_yaml(path)? })
    }

    pub fn resources(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.doc["Resources"].as_object().into_iter().flatten()
    }

    /// The logical ids of the template's functions.
    pub fn function_ids(&self) -> Vec<String> {
        self.resources()
            .filter(|(_, resource)| resource["Type"] == FUNCTION)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Every function's routes as written (paths and methods are literals in the template),
    /// with the binary that serves each.
    pub fn routes(&self) -> Vec<(String, Route)> {
        self.resources()
            .filter_map(|(_, resource)| Some((binary(resource)?, routes(&resource["Properties"]))))
            .flat_map(|(binary, routes)| routes.into_iter().map(move |route| (binary.clone(), route)))
            .collect()
    }

    pub fn parameters(&self) -> &Map<String, Value> {
        static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
        self.doc["Parameters"]
            .as_object()
            .unwrap_or_else(|| EMPTY.get_or_init(Map::new))
    }
}

impl Template {
    /// Every custom metric the dashboards show or an alarm watches: (binary, metric, where), for
    /// the metrics of `namespace` whose one dimension `dimension` names a function of the
    /// template (`${XFunction}` in a dashboard body, `!Ref XFunction` in an alarm). A metric of
    /// the namespace with other dimensions, or naming no function, is an error.
    pub fn custom_metrics(&self, namespace: &str, dimension: &str) -> Result<Vec<(String, String, String)>> {
        let binaries: BTreeMap<String, String> = self
            .function_ids()
            .into_iter()
            .filter_map(|id| {
                let binary = self.doc["Resources"][&id]["Metadata"]["BuildProperties"]["Binary"].as_str()?;
                Some((id, binary.to_string()))
            })
            .collect();
        let function = |value: &Value, at: &str| -> Result<String> {
            let id = match value {
                Value::String(s) => s.strip_prefix('@').unwrap_or(s).to_string(),
                other => other["Ref"].as_str().unwrap_or_default().to_string(),
            };
            binaries
                .get(&id)
                .cloned()
                .ok_or_else(|| anyhow!("{at}: dimension {dimension}={value} is not a function of the template"))
        };
        let mut found = Vec::new();
        for (id, resource) in self.resources() {
            match resource["Type"].as_str() {
                Some("AWS::CloudWatch::Dashboard") => {
                    let body = &resource["Properties"]["DashboardBody"]["Fn::Sub"];
                    let text = body.as_str().or_else(|| body[0].as_str()).unwrap_or_default();
                    // `"${XFunction}"` keeps its name (as "@XFunction"); any other ${…} stands for a
                    // string or a number, and 1 is both.
                    let named = regex_lite::Regex::new(r#""\$\{(\w+)\}""#).unwrap();
                    let text = named.replace_all(text, "\"@$1\"");
                    let text = regex_lite::Regex::new(r"\$\{[^}]+\}").unwrap().replace_all(&text, "1");
                    let dashboard: Value =
                        serde_json::from_str(&text).with_context(|| format!("{id}: DashboardBody is not JSON"))?;
                    for widget in dashboard["widgets"].as_array().into_iter().flatten() {
                        let at = format!("{id} widget {}", widget["properties"]["title"]);
                        let mut previous: Vec<Value> = Vec::new();
                        for entry in widget["properties"]["metrics"].as_array().into_iter().flatten() {
                            let mut values: Vec<Value> = entry
                                .as_array()
                                .into_iter()
                                .flatten()
                                .filter(|v| !v.is_object())
                                .cloned()
                                .collect();
                            if values.is_empty() {
                                continue; // an expression
                            }
                            // CloudWatch's shorthand: "..." repeats the previous metric's leading
                            // values, "." the previous metric's value at that position.
                            if values[0] == "..." {
                                let keep = previous.len().saturating_sub(values.len() - 1);
                                values = previous[..keep].iter().chain(&values[1..]).cloned().collect();
                            }
                            for (i, value) in values.iter_mut().enumerate() {
                                if *value == "." && i < previous.len() {
                                    *value = previous[i].clone();
                                }
                            }
                            previous = values.clone();
                            if values[0] != namespace {
                                continue;
                            }
                            if values.len() != 4 || values[2] != dimension {
                                bail!("{at}: a {namespace} metric needs exactly the dimension {dimension}: {entry}");
                            }
                            found.push((function(&values[3], &at)?, scalar(&values[1]), at.clone()));
                        }
                    }
                }
                Some("AWS::CloudWatch::Alarm") => {
                    let properties = &resource["Properties"];
                    let stats = properties["Metrics"].as_array().into_iter().flatten();
                    let metrics = std::iter::once(properties).chain(stats.map(|m| &m["MetricStat"]["Metric"]));
                    for metric in metrics.filter(|m| m["Namespace"] == namespace) {
                        let dimensions = metric["Dimensions"].as_array().cloned().unwrap_or_default();
                        if dimensions.len() != 1 || dimensions[0]["Name"] != dimension {
                            bail!("{id}: a {namespace} metric needs exactly the dimension {dimension}");
                        }
                        found.push((
                            function(&dimensions[0]["Value"], id)?,
                            scalar(&metric["MetricName"]),
                            id.clone(),
                        ));
                    }
                }
                _ => {}
            }
        }
        Ok(found)
    }
}

/// Where a template is deployed: a stack in a region, with parameter values.
#[derive(Debug, Clone)]
pub struct Target {
    /// Where the values come from, for messages (`samconfig.toml [dev]`).
    pub name: String,
    pub stack: String,
    pub region: String,
    /// The values given; the template's defaults fill in the rest.
    pub parameters: BTreeMap<String, String>,
}

/// The deployment targets of `samconfig.toml`: every environment with deploy parameters.
pub fn samconfig_targets(path: &Path) -> Result<Vec<Target>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let config: toml::Table = toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let mut targets = Vec::new();
    for (env, commands) in &config {
        let Some(deploy) = commands.get("deploy").and_then(|d| d.get("parameters")) else {
            continue;
        };
        let setting = |key: &str| {
            deploy
                .get(key)
                .or_else(|| commands.get("global")?.get("parameters")?.get(key))
                .and_then(|v| v.as_str())
                .map(str::to_string)
        };
        let overrides = match deploy.get("parameter_overrides") {
            None => Vec::new(),
            Some(toml::Value::String(line)) => split_overrides(line),
            Some(toml::Value::Array(items)) => items
                .iter()
                .map(|item| {
                    item.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| anyhow!("[{env}]: a non-string override"))
                })
                .collect::<Result<_>>()?,
            Some(other) => bail!("[{env}]: parameter_overrides is {other}"),
        };
        let mut parameters = BTreeMap::new();
        for item in overrides {
            let (name, value) = item
                .split_once('=')
                .ok_or_else(|| anyhow!("[{env}]: override {item:?} is not Name=Value"))?;
            parameters.insert(name.to_string(), value.trim_matches('"').to_string());
        }
        targets.push(Target {
            name: format!("samconfig.toml [{env}]"),
            stack: setting("stack_name").unwrap_or_else(|| "favorites".into()),
            region: setting("region").unwrap_or_else(|| "us-east-1".into()),
            parameters,
        });
    }
    Ok(targets)
}

/// `A=1 B="x y"`: SAM's one-line form of parameter overrides.
fn split_overrides(line: &str) -> Vec<String> {
    let (mut items, mut current, mut quoted) = (Vec::new(), String::new(), false);
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if !current.is_empty() {
                    items.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        items.push(current);
    }
    items
}

/// One function as the template deploys it to a target.
#[derive(Debug, Clone)]
pub struct DeployedFunction {
    pub logical_id: String,
    /// `Metadata.BuildProperties.Binary`.
    pub binary: Option<String>,
    /// The Globals' variables and its own, resolved; variables that resolve to nothing dropped.
    pub environment: BTreeMap<String, String>,
    /// What its policies allow: (action, resource ARN).
    pub permissions: BTreeSet<(String, String)>,
    /// Policies of a shape this model does not read (a managed policy, another SAM template).
    pub unread_policies: Vec<String>,
    pub routes: Vec<Route>,
}

/// An `Api` event of a function.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Route {
    /// Upper case: `GET`.
    pub method: String,
    pub path: String,
    /// `ResponseTransferMode: RESPONSE_STREAM`: API Gateway streams the function's answer.
    pub streamed: bool,
}

impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.method, self.path)
    }
}

/// The template resolved for one target.
pub struct Deployment<'a> {
    template: &'a Template,
    pub target: &'a Target,
    conditions: BTreeMap<String, bool>,
    /// What stands in for a resource: `Name` (its `Ref`) or `Name.Attribute` (a `GetAtt`) to
    /// the value the local stand-in has, in place of a placeholder.
    stand_ins: BTreeMap<String, String>,
}

impl<'a> Deployment<'a> {
    pub fn new(template: &'a Template, target: &'a Target) -> Result<Self> {
        let mut deployment = Self {
            template,
            target,
            conditions: BTreeMap::new(),
            stand_ins: BTreeMap::new(),
        };
        for (name, spec) in template.parameters() {
            if !target.parameters.contains_key(name) && spec.get("Default").is_none() {
                bail!("{}: the template needs {name} (it has no default)", target.name);
            }
        }
        if let Some(conditions) = template.doc["Conditions"].as_object() {
            for name in conditions.keys() {
                let value = deployment.condition(name, 0)?;
                deployment.conditions.insert(name.clone(), value);
            }
        }
        Ok(deployment)
    }

    /// Whether `condition` holds in this target.
    pub fn is(&self, condition: &str) -> Result<bool> {
        self.condition(condition, 0)
    }

    /// From now on `Ref name` (or `GetAtt name`, for `Resource.Attribute`) resolves to `value`.
    pub fn stand_in(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.stand_ins.insert(name.into(), value.into());
    }

    /// The value a parameter has in this target, as a string (a list parameter comma-joined).
    fn parameter(&self, name: &str) -> Result<String> {
        if let Some(value) = self.target.parameters.get(name) {
            return Ok(value.clone());
        }
        match &self
            .template
            .parameters()
            .get(name)
            .ok_or_else(|| anyhow!("no parameter {name}"))?["Default"]
        {
            Value::String(s) => Ok(s.clone()),
            Value::Null => bail!("{}: the template needs {name}", self.target.name),
            other => Ok(other.to_string()),
        }
    }

    fn condition(&self, name: &str, depth: usize) -> Result<bool> {
        if let Some(value) = self.conditions.get(name) {
            return Ok(*value);
        }
        if depth > 32 {
            bail!("condition {name}: too deep");
        }
        let spec = &self.template.doc["Conditions"][name];
        if spec.is_null() {
            bail!("no condition {name}");
        }
        self.evaluate(spec, depth + 1)
    }

    fn evaluate(&self, spec: &Value, depth: usize) -> Result<bool> {
        let (function, args) = single(spec).ok_or_else(|| anyhow!("not a condition: {spec}"))?;
        let args_list = || {
            args.as_array()
                .ok_or_else(|| anyhow!("{function}: arguments are not a list"))
        };
        match function {
            "Condition" => self.condition(args.as_str().ok_or_else(|| anyhow!("Condition: not a name"))?, depth),
            "Fn::Equals" => {
                let [a, b] = args_list()?.as_slice() else {
                    bail!("Fn::Equals takes two values")
                };
                Ok(scalar(&self.resolve(a)?.unwrap_or_default()) == scalar(&self.resolve(b)?.unwrap_or_default()))
            }
            "Fn::Not" => Ok(!self.evaluate(&args_list()?[0], depth + 1)?),
            "Fn::And" => args_list()?
                .iter()
                .try_fold(true, |all, c| Ok(all && self.evaluate(c, depth + 1)?)),
            "Fn::Or" => args_list()?
                .iter()
                .try_fold(false, |any, c| Ok(any || self.evaluate(c, depth + 1)?)),
            other => bail!("{other} is not a condition function"),
        }
    }

    /// A value with its intrinsics resolved; `None` when it resolves to `AWS::NoValue`.
    pub fn resolve(&self, value: &Value) -> Result<Option<Value>> {
        match value {
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    out.extend(self.resolve(item)?);
                }
                Ok(Some(Value::Array(out)))
            }
            Value::Object(map) => {
                if let Some((function, args)) = single(value)
                    && (function == "Ref" || function.starts_with("Fn::"))
                {
                    return self.intrinsic(function, args);
                }
                let mut out = Map::new();
                for (key, item) in map {
                    if let Some(item) = self.resolve(item)? {
                        out.insert(key.clone(), item);
                    }
                }
                Ok(Some(Value::Object(out)))
            }
            other => Ok(Some(other.clone())),
        }
    }

    fn intrinsic(&self, function: &str, args: &Value) -> Result<Option<Value>> {
        match function {
            "Ref" => self.reference(args.as_str().ok_or_else(|| anyhow!("Ref: not a name: {args}"))?),
            "Fn::GetAtt" => {
                let (resource, attribute) = match args {
                    Value::Array(parts) => (
                        parts[0].as_str().unwrap_or_default().to_string(),
                        parts[1..]
                            .iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join("."),
                    ),
                    Value::String(s) => {
                        let (r, a) = s.split_once('.').ok_or_else(|| anyhow!("Fn::GetAtt {s}"))?;
                        (r.to_string(), a.to_string())
                    }
                    other => bail!("Fn::GetAtt {other}"),
                };
                self.attribute(&resource, &attribute).map(Some)
            }
            "Fn::Sub" => {
                let (text, variables) = match args {
                    Value::String(s) => (s.as_str(), Map::new()),
                    Value::Array(parts) => (
                        parts[0].as_str().ok_or_else(|| anyhow!("Fn::Sub: not a string"))?,
                        parts.get(1).and_then(Value::as_object).cloned().unwrap_or_default(),
                    ),
                    other => bail!("Fn::Sub {other}"),
                };
                self.substitute(text, &variables).map(|s| Some(Value::String(s)))
            }
            "Fn::If" => {
                let [condition, yes, no] = args.as_array().map(Vec::as_slice).unwrap_or_default() else {
                    bail!("Fn::If takes a condition and two values: {args}")
                };
                let condition = condition
                    .as_str()
                    .ok_or_else(|| anyhow!("Fn::If: not a condition name"))?;
                let chosen = if self.condition(condition, 0)? { yes } else { no };
                self.resolve(chosen)
            }
            "Fn::Join" => {
                let [separator, items] = args.as_array().map(Vec::as_slice).unwrap_or_default() else {
                    bail!("Fn::Join {args}")
                };
                let items = self.resolve(items)?.unwrap_or_default();
                let parts: Vec<String> = items.as_array().into_iter().flatten().map(scalar).collect();
                Ok(Some(Value::String(parts.join(separator.as_str().unwrap_or_default()))))
            }
            other => bail!("{other}: not modelled by tests/src/template.rs"),
        }
    }

    fn reference(&self, name: &str) -> Result<Option<Value>> {
        let t = self.target;
        Ok(Some(match name {
            "AWS::NoValue" => return Ok(None),
            "AWS::Region" => json!(t.region),
            "AWS::AccountId" => json!(ACCOUNT),
            "AWS::StackName" => json!(t.stack),
            "AWS::Partition" => json!("aws"),
            "AWS::URLSuffix" => json!("amazonaws.com"),
            _ if self.stand_ins.contains_key(name) => json!(self.stand_ins[name]),
            _ if self.template.parameters().contains_key(name) => {
                let value = self.parameter(name)?;
                let kind = self.template.parameters()[name]["Type"].as_str().unwrap_or_default();
                if kind.starts_with("List<") || kind == "CommaDelimitedList" {
                    json!(value.split(',').map(str::trim).collect::<Vec<_>>())
                } else {
                    json!(value)
                }
            }
            _ => {
                let resource = &self.template.doc["Resources"][name];
                match resource["Type"]
                    .as_str()
                    .ok_or_else(|| anyhow!("Ref {name}: no such resource"))?
                {
                    "AWS::SecretsManager::Secret" => json!(self.secret_arn(name)),
                    "AWS::DynamoDB::Table" => json!(self.table_name(name)),
                    _ => json!(format!("{}-{name}-{PLACEHOLDER}", t.stack)),
                }
            }
        }))
    }

    /// A secret's ARN as Secrets Manager makes it: the name and six random characters.
    pub fn secret_arn(&self, logical_id: &str) -> String {
        format!(
            "arn:aws:secretsmanager:{}:{ACCOUNT}:secret:{logical_id}-{SECRET_SUFFIX}",
            self.target.region
        )
    }

    /// A table's name as CloudFormation makes it: stack, logical id, a suffix.
    pub fn table_name(&self, logical_id: &str) -> String {
        format!("{}-{logical_id}-{TABLE_SUFFIX}", self.target.stack)
    }

    /// A table's ARN from its name.
    pub fn table_arn(&self, name: &str) -> String {
        format!("arn:aws:dynamodb:{}:{ACCOUNT}:table/{name}", self.target.region)
    }

    fn attribute(&self, resource: &str, attribute: &str) -> Result<Value> {
        if let Some(value) = self.stand_ins.get(&format!("{resource}.{attribute}")) {
            return Ok(json!(value));
        }
        let kind = self.template.doc["Resources"][resource]["Type"]
            .as_str()
            .ok_or_else(|| anyhow!("Fn::GetAtt {resource}.{attribute}: no such resource"))?;
        let host = format!(
            "{}.{PLACEHOLDER}.{}.{}",
            resource.to_ascii_lowercase(),
            self.target.region,
            if kind.starts_with("AWS::ElastiCache") {
                "cache.amazonaws.com"
            } else {
                "rds.amazonaws.com"
            }
        );
        Ok(match (kind, attribute) {
            ("AWS::DynamoDB::Table", "Arn") => json!(self.table_arn(&self.table_name(resource))),
            (_, "Arn") => json!(format!(
                "arn:aws:{}:{}:{ACCOUNT}:{resource}",
                kind.split("::").nth(1).unwrap_or("aws").to_ascii_lowercase(),
                self.target.region
            )),
            (_, a) if a.ends_with("Port") => json!(if kind.starts_with("AWS::ElastiCache") {
                "6379"
            } else {
                "5432"
            }),
            (_, a) if a == "Endpoint" || a.ends_with("Address") => json!(host),
            _ => json!(format!("{resource}.{attribute}")),
        })
    }

    fn substitute(&self, text: &str, variables: &Map<String, Value>) -> Result<String> {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let end = rest[start..]
                .find('}')
                .ok_or_else(|| anyhow!("Fn::Sub: unclosed ${{ in {text:?}"))?
                + start;
            let name = &rest[start + 2..end];
            if let Some(literal) = name.strip_prefix('!') {
                out.push_str(&format!("${{{literal}}}"));
            } else if let Some(value) = variables.get(name) {
                out.push_str(&scalar(&self.resolve(value)?.unwrap_or_default()));
            } else if let Some((resource, attribute)) = name.split_once('.')
                && !name.starts_with("AWS::")
            {
                out.push_str(&scalar(&self.attribute(resource, attribute)?));
            } else {
                out.push_str(&scalar(&self.reference(name)?.unwrap_or_default()));
            }
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// Every function of the template, as deployed to this target.
    pub fn functions(&self) -> Result<Vec<DeployedFunction>> {
        let globals = self
            .resolve(&self.template.doc["Globals"]["Function"]["Environment"]["Variables"])?
            .unwrap_or_default();
        self.template
            .function_ids()
            .into_iter()
            .map(|id| {
                self.function(&id, &globals)
                    .with_context(|| format!("{id} ({})", self.target.name))
            })
            .collect()
    }

    fn function(&self, logical_id: &str, globals: &Value) -> Result<DeployedFunction> {
        let resource = &self.template.doc["Resources"][logical_id];
        let properties = self.resolve(&resource["Properties"])?.unwrap_or_default();
        let mut environment = BTreeMap::new();
        for variables in [globals, &properties["Environment"]["Variables"]] {
            for (name, value) in variables.as_object().into_iter().flatten() {
                environment.insert(name.clone(), scalar(value));
            }
        }
        let mut permissions = BTreeSet::new();
        let mut unread_policies = Vec::new();
        for policy in properties["Policies"].as_array().into_iter().flatten() {
            let Some(policy) = policy.as_object() else {
                unread_policies.push(policy.to_string());
                continue;
            };
            for (kind, body) in policy {
                match kind.as_str() {
                    "AWSSecretsManagerGetSecretValuePolicy" => {
                        permissions.insert(("secretsmanager:GetSecretValue".into(), scalar(&body["SecretArn"])));
                    }
                    "Statement" => {
                        for statement in as_list(body) {
                            if statement["Effect"] != "Allow" {
                                unread_policies.push(statement.to_string());
                                continue;
                            }
                            for action in as_list(&statement["Action"]) {
                                for resource in as_list(&statement["Resource"]) {
                                    permissions.insert((scalar(action), scalar(resource)));
                                }
                            }
                        }
                    }
                    _ => unread_policies.push(format!("{kind}: {body}")),
                }
            }
        }
        Ok(DeployedFunction {
            logical_id: logical_id.to_string(),
            binary: binary(resource),
            environment,
            permissions,
            unread_policies,
            routes: routes(&properties),
        })
    }
}

/// `Metadata.BuildProperties.Binary` of a function resource.
fn binary(resource: &Value) -> Option<String> {
    resource["Metadata"]["BuildProperties"]["Binary"]
        .as_str()
        .map(str::to_string)
}

/// The `Api` events of a function's properties.
fn routes(properties: &Value) -> Vec<Route> {
    properties["Events"]
        .as_object()
        .into_iter()
        .flat_map(|events| events.values())
        .filter(|event| event["Type"] == "Api")
        .map(|event| {
            let p = &event["Properties"];
            Route {
                method: scalar(&p["Method"]).to_ascii_uppercase(),
                path: scalar(&p["Path"]),
                streamed: p["ResponseTransferMode"] == "RESPONSE_STREAM",
            }
        })
        .collect()
}

/// `{"Fn::X": args}`: the one key and its value.
fn single(value: &Value) -> Option<(&str, &Value)> {
    let map = value.as_object()?;
    (map.len() == 1).then(|| map.iter().next().map(|(k, v)| (k.as_str(), v)))?
}

fn as_list(value: &Value) -> Vec<&Value> {
    match value {
        Value::Array(items) => items.iter().collect(),
        Value::Null => Vec::new(),
        other => vec![other],
    }
}

/// A resolved value as an environment variable would hold it.
pub fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Array(items) => items.iter().map(scalar).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// YAML to JSON, CloudFormation's short-form tags in their long form.
fn long_form(yaml: serde_norway::Value) -> Result<Value> {
    use serde_norway::Value as Y;
    Ok(match yaml {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => serde_json::to_value(&n)?,
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(items.into_iter().map(long_form).collect::<Result<_>>()?),
        Y::Mapping(map) => {
            let mut out = Map::new();
            for (key, value) in map {
                let key = match key {
                    Y::String(s) => s,
                    other => serde_norway::to_string(&other)?.trim().to_string(),
                };
                out.insert(key, long_form(value)?);
            }
            Value::Object(out)
        }
        Y::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let name = tag.trim_start_matches('!');
            let value = long_form(tagged.value)?;
            match name {
                "Ref" | "Condition" => json!({ name: value }),
                "GetAtt" => match value {
                    Value::String(s) => {
                        let (resource, attribute) =
                            s.split_once('.').ok_or_else(|| anyhow!("!GetAtt {s}: no attribute"))?;
                        json!({ "Fn::GetAtt": [resource, attribute] })
                    }
                    other => json!({ "Fn::GetAtt": other }),
                },
                _ => json!({ format!("Fn::{name}"): value }),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment_of(yaml: &str, parameters: &[(&str, &str)]) -> (Template, Target) {
        let doc = long_form(serde_norway::from_str(yaml).unwrap()).unwrap();
        let target = Target {
            name: "test".into(),
            stack: "s".into(),
            region: "eu-west-1".into(),
            parameters: parameters.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        };
        (Template { doc }, target)
    }

    #[test]
    fn intrinsics_resolve_to_placeholders_shaped_like_aws_values() {
        let (template, target) = deployment_of(
            r#"
Parameters:
  Url: { Type: String, Default: "" }
Conditions:
  HasUrl: !Not [!Equals [!Ref Url, ""]]
Resources:
  Key: { Type: AWS::SecretsManager::Secret }
  Table: { Type: AWS::DynamoDB::Table }
  Cache: { Type: AWS::ElastiCache::ReplicationGroup }
  F:
    Type: AWS::Serverless::Function
    Properties:
      Environment:
        Variables:
          KEY: !Ref Key
          TABLE: !Ref Table
          REDIS: !Sub "rediss://${Cache.PrimaryEndPoint.Address}:${Cache.PrimaryEndPoint.Port}"
          URL: !If [HasUrl, !Ref Url, !Ref AWS::NoValue]
      Policies:
        - Statement:
            - { Effect: Allow, Action: [dynamodb:GetItem], Resource: !GetAtt Table.Arn }
"#,
            &[],
        );
        let deployment = Deployment::new(&template, &target).unwrap();
        let f = &deployment.functions().unwrap()[0];
        assert_eq!(
            f.environment["KEY"],
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:Key-AbCdEf"
        );
        assert_eq!(f.environment["TABLE"], "s-Table-1A2B3C4D5E6F");
        assert_eq!(
            f.environment["REDIS"],
            "rediss://cache.placeholder.eu-west-1.cache.amazonaws.com:6379"
        );
        assert!(!f.environment.contains_key("URL"), "NoValue drops the variable");
        let arn = deployment.table_arn("s-Table-1A2B3C4D5E6F");
        assert!(f.permissions.contains(&("dynamodb:GetItem".to_string(), arn)));

        let with_url = Target {
            parameters: [("Url".to_string(), "https://x".to_string())].into(),
            ..target.clone()
        };
        let f = &Deployment::new(&template, &with_url).unwrap().functions().unwrap()[0];
        assert_eq!(f.environment["URL"], "https://x");
    }

    #[test]
    fn overrides_split_like_sam_reads_them() {
        assert_eq!(split_overrides(r#"A=1 B="x y"  C=z"#), ["A=1", "B=x y", "C=z"]);
    }
}
