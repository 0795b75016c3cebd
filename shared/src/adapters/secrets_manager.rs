//! [`SecretSource`] on AWS Secrets Manager (`GetSecretValue` by version stage).
//!
//! AWS's caching client (`aws-secretsmanager-caching`) was considered: it caches `AWSCURRENT`
//! well, but the two things we need beyond that (a forced refresh only when the value in hand
//! was refused, and the `AWSPREVIOUS` version for the JWT grace period) sit on top of any cache
//! anyway, so [`crate::secrets::CachedSecret`] does the caching here in a few lines.

use std::time::SystemTime;

use anyhow::Context;
use async_trait::async_trait;
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError;

use crate::ports::{SecretSource, SecretVersion};

/// The Secrets Manager actions this source calls on a secret: what a function's IAM policy
/// must allow on each secret it reads (checked against template.yaml by a test).
pub const ACTIONS: &[&str] = &["secretsmanager:GetSecretValue"];

pub struct SecretsManagerSource {
    client: Client,
}

impl SecretsManagerSource {
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        Self {
            client: Client::new(config),
        }
    }

    async fn version(&self, id: &str, stage: &str) -> anyhow::Result<Option<SecretVersion>> {
        let output = match self
            .client
            .get_secret_value()
            .secret_id(id)
            .version_stage(stage)
            .send()
            .await
        {
            Ok(output) => output,
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(GetSecretValueError::ResourceNotFoundException(_))
                ) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(anyhow::Error::new(e).context(format!("GetSecretValue {id} ({stage})"))),
        };
        let value = output
            .secret_string
            .with_context(|| format!("secret {id} has no SecretString (binary secrets are not supported)"))?;
        Ok(Some(SecretVersion {
            value: value.into(),
            version_id: output.version_id.unwrap_or_default(),
            created: output.created_date.and_then(|d| SystemTime::try_from(d).ok()),
        }))
    }
}

#[async_trait]
impl SecretSource for SecretsManagerSource {
    async fn current(&self, id: &str) -> anyhow::Result<SecretVersion> {
        self.version(id, "AWSCURRENT")
            .await?
            .with_context(|| format!("secret {id} does not exist or has no current version"))
    }

    async fn previous(&self, id: &str) -> anyhow::Result<Option<SecretVersion>> {
        self.version(id, "AWSPREVIOUS").await
    }
}
