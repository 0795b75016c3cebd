//! The stack's AWS side, in a moto server that enforces IAM (started with
//! `INITIAL_NO_AUTH_ACTION_COUNT`): an administrator made by the first actions, which moto
//! takes without credentials; then, with its keys, the template's tables, secrets and roles as
//! CloudFormation creates them, and each role's credentials from STS, as Lambda hands them to a
//! function. A call the role's policies do not allow is an AccessDenied, as in AWS; moto checks
//! the action, not the resource (its DynamoDB and Secrets Manager ask about `*`), so policies
//! go in with `Resource: "*"` and `shared/tests/template.rs` checks the resources offline.

use anyhow::{Context, Result, bail};
use aws_credential_types::Credentials;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TimeToLiveSpecification,
};
use serde_json::{Value, json};

use super::transformed::Role;
use crate::template::{ACCOUNT, scalar};

const ADMIN: &str = "stack-admin";
/// How many actions the administrator's making takes: what `INITIAL_NO_AUTH_ACTION_COUNT`
/// must be (scripts/lib.sh, start_moto).
pub const BOOTSTRAP_ACTIONS: usize = 3;

/// Keys of the administrator, which creates the stack's resources.
#[derive(Clone)]
pub struct Admin {
    pub endpoint: String,
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl Admin {
    /// The administrator of a fresh moto server: a user, a policy allowing everything, its
    /// access key, made in the actions moto takes before it enforces IAM.
    pub async fn bootstrap(endpoint: &str) -> Result<Self> {
        let anyone = Credentials::new("bootstrap", "bootstrap", None, None, "stack");
        let iam = aws_sdk_iam::Client::new(&sdk_config(endpoint, "us-east-1", anyone).await);
        iam.create_user()
            .user_name(ADMIN)
            .send()
            .await
            .context("creating the stack's admin user")?;
        let everything =
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]});
        iam.put_user_policy()
            .user_name(ADMIN)
            .policy_name("everything")
            .policy_document(everything.to_string())
            .send()
            .await
            .context("allowing the admin user everything")?;
        let key = iam
            .create_access_key()
            .user_name(ADMIN)
            .send()
            .await
            .context("creating the admin user's access key")?
            .access_key
            .context("no access key")?;
        Ok(Self {
            endpoint: endpoint.to_string(),
            access_key_id: key.access_key_id,
            secret_access_key: key.secret_access_key,
        })
    }

    /// `STACK_AWS_ENDPOINT_URL`, `STACK_AWS_ACCESS_KEY_ID`, `STACK_AWS_SECRET_ACCESS_KEY` (what
    /// `stack admin` printed).
    pub fn from_env() -> Result<Self> {
        let var = |name: &str| {
            std::env::var(name).with_context(|| format!("{name} is not set (scripts/lib.sh start_stack_moto sets it)"))
        };
        Ok(Self {
            endpoint: var("STACK_AWS_ENDPOINT_URL")?,
            access_key_id: var("STACK_AWS_ACCESS_KEY_ID")?,
            secret_access_key: var("STACK_AWS_SECRET_ACCESS_KEY")?,
        })
    }
}

async fn sdk_config(endpoint: &str, region: &str, credentials: Credentials) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new(region.to_string()))
        .credentials_provider(credentials)
        .load()
        .await
}

/// The administrator's clients.
pub struct Aws {
    config: aws_config::SdkConfig,
    admin: Admin,
}

/// A role's temporary credentials.
pub struct RoleCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
}

impl Aws {
    /// The administrator's clients in `region`, where the stack's resources go.
    pub async fn new(admin: &Admin, region: &str) -> Self {
        let credentials = Credentials::new(&admin.access_key_id, &admin.secret_access_key, None, None, "stack");
        Self {
            config: sdk_config(&admin.endpoint, region, credentials).await,
            admin: admin.clone(),
        }
    }

    pub fn endpoint(&self) -> &str {
        &self.admin.endpoint
    }

    /// A table with the properties' keys, billing mode and TTL; its ARN.
    pub async fn create_table(&self, name: &str, properties: &Value) -> Result<String> {
        let dynamodb = aws_sdk_dynamodb::Client::new(&self.config);
        let mut create = dynamodb.create_table().table_name(name);
        for attribute in properties["AttributeDefinitions"].as_array().into_iter().flatten() {
            create = create.attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(scalar(&attribute["AttributeName"]))
                    .attribute_type(ScalarAttributeType::from(scalar(&attribute["AttributeType"]).as_str()))
                    .build()?,
            );
        }
        for key in properties["KeySchema"].as_array().into_iter().flatten() {
            create = create.key_schema(
                KeySchemaElement::builder()
                    .attribute_name(scalar(&key["AttributeName"]))
                    .key_type(KeyType::from(scalar(&key["KeyType"]).as_str()))
                    .build()?,
            );
        }
        let billing = scalar(&properties["BillingMode"]);
        let created = create
            .billing_mode(BillingMode::from(if billing.is_empty() {
                "PROVISIONED"
            } else {
                &billing
            }))
            .send()
            .await
            .with_context(|| format!("creating table {name}"))?;
        let ttl = &properties["TimeToLiveSpecification"];
        if ttl["Enabled"] == true {
            dynamodb
                .update_time_to_live()
                .table_name(name)
                .time_to_live_specification(
                    TimeToLiveSpecification::builder()
                        .enabled(true)
                        .attribute_name(scalar(&ttl["AttributeName"]))
                        .build()?,
                )
                .send()
                .await
                .with_context(|| format!("enabling TTL on {name}"))?;
        }
        created
            .table_description
            .and_then(|t| t.table_arn)
            .context("a created table without an ARN")
    }

    /// A secret holding `value`; its ARN (the name and six random characters).
    pub async fn create_secret(&self, name: &str, value: &str) -> Result<String> {
        let created = aws_sdk_secretsmanager::Client::new(&self.config)
            .create_secret()
            .name(name)
            .secret_string(value)
            .send()
            .await
            .with_context(|| format!("creating secret {name}"))?;
        created.arn.context("a created secret without an ARN")
    }

    /// The role `name` with the template's policies (see the module's note on resources).
    pub async fn create_role(&self, name: &str, role: &Role) -> Result<String> {
        let iam = aws_sdk_iam::Client::new(&self.config);
        // The administrator stands in for the service the role trusts (Lambda): named beside it.
        let mut trust = role.trust_policy.clone();
        let admin = format!("arn:aws:iam::{ACCOUNT}:user/{ADMIN}");
        let mut trusted = 0;
        for statement in trust["Statement"].as_array_mut().into_iter().flatten() {
            if statement["Principal"]["Service"].is_null() {
                continue;
            }
            statement["Principal"]["AWS"] = json!(admin);
            trusted += 1;
        }
        if trusted == 0 {
            bail!("{}: its trust policy names no service", role.logical_id);
        }
        let created = iam
            .create_role()
            .role_name(name)
            .assume_role_policy_document(trust.to_string())
            .max_session_duration(43_200)
            .send()
            .await
            .with_context(|| format!("creating role {name}"))?;
        for (policy, document) in &role.policies {
            iam.put_role_policy()
                .role_name(name)
                .policy_name(policy)
                .policy_document(for_moto(document).to_string())
                .send()
                .await
                .with_context(|| format!("{}: putting policy {policy}", role.logical_id))?;
        }
        for arn in &role.managed_policy_arns {
            iam.attach_role_policy()
                .role_name(name)
                .policy_arn(arn)
                .send()
                .await
                .with_context(|| format!("{}: attaching {arn}", role.logical_id))?;
        }
        created.role.map(|r| r.arn).context("a created role without an ARN")
    }

    /// Credentials of the role, from STS, for 12 hours.
    pub async fn credentials(&self, role_arn: &str, session: &str) -> Result<RoleCredentials> {
        let assumed = aws_sdk_sts::Client::new(&self.config)
            .assume_role()
            .role_arn(role_arn)
            .role_session_name(session)
            .duration_seconds(43_200)
            .send()
            .await
            .with_context(|| format!("assuming {role_arn}"))?;
        let credentials = assumed.credentials.context("no credentials")?;
        Ok(RoleCredentials {
            access_key_id: credentials.access_key_id,
            secret_access_key: credentials.secret_access_key,
            session_token: credentials.session_token,
        })
    }
}

/// The policy document as moto can check it: every statement's `Resource` widened to `*`
/// (moto asks about `*`), and a `Version`, which SAM's generated policies leave out (IAM then
/// reads them as 2008-10-17; moto refuses them).
fn for_moto(document: &Value) -> Value {
    let mut document = document.clone();
    if document.get("Version").is_none() {
        document["Version"] = json!("2012-10-17");
    }
    if let Some(statements) = document["Statement"].as_array_mut() {
        for statement in statements {
            statement["Resource"] = json!("*");
        }
    }
    document
}
