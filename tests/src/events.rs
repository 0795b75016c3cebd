//! The API Gateway sample events of `events/` (`events/<function>/<case>-<status>.json`): every
//! one with the status its name promises, and one patched into the request a test or benchmark
//! sends, so that the functions see exactly the event shape the tests replay, with a token, body
//! or query of the caller's own.

use std::path::PathBuf;

use anyhow::Context;
use serde_json::{Value, json};

/// `events/fixture.json`: the user the sample events act for and the key their tokens are
/// signed with.
#[derive(serde::Deserialize)]
pub struct Fixture {
    pub jwt_secret: String,
    pub user_id: String,
    pub email: String,
    pub password: String,
}

pub fn fixture() -> Fixture {
    let path = crate::template::repo_root().join("events/fixture.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Stores the fixture user in `database` (an events replay's, a function's embedded one): the
/// sample events' tokens are refused for a user the database does not hold.
pub async fn insert_fixture_user(database: &shared::adapters::sql::Database) -> anyhow::Result<()> {
    use shared::domain::{Email, PasswordHash, User, UserId};
    let fixture = fixture();
    let user = User {
        id: UserId::from_uuid(fixture.user_id.parse()?),
        email: Email::parse(&fixture.email)?,
        password_hash: PasswordHash::new(bcrypt::hash(&fixture.password, 4)?),
    };
    database.users().insert_user(&user).await?;
    Ok(())
}

/// One sample event.
pub struct SampleEvent {
    /// The function it is for (its directory).
    pub function: String,
    /// `<function>/<case>-<status>`, for messages.
    pub name: String,
    /// The status its name promises.
    pub expected: u16,
    pub path: PathBuf,
}

/// Every sample event, by function and case.
pub fn all() -> Vec<SampleEvent> {
    let sorted = |dir: PathBuf| {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .flatten()
            .map(|entry| entry.path())
            .collect();
        paths.sort();
        paths
    };
    let mut events = Vec::new();
    for directory in sorted(crate::template::repo_root().join("events"))
        .into_iter()
        .filter(|p| p.is_dir())
    {
        let function = directory.file_name().unwrap().to_string_lossy().to_string();
        for path in sorted(directory) {
            let stem = path.file_stem().unwrap().to_string_lossy().to_string();
            let expected = stem
                .rsplit('-')
                .next()
                .and_then(|status| status.parse().ok())
                .unwrap_or_else(|| panic!("{}: event names end in -<status>", path.display()));
            events.push(SampleEvent {
                name: format!("{function}/{stem}"),
                function: function.clone(),
                expected,
                path,
            });
        }
    }
    events
}

/// `events/<name>` (e.g. `list-favorites/first-page-200.json`) with `patch` applied: `body` is
/// merged into the event's JSON body, `headers` and `queryStringParameters` into theirs and
/// their multi-value twins, anything else merged as it is.
pub fn event(name: &str, patch: Value) -> anyhow::Result<Vec<u8>> {
    let path = crate::template::repo_root().join("events").join(name);
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut event: Value = serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    apply(&mut event, patch)?;
    Ok(serde_json::to_vec(&event)?)
}

fn apply(event: &mut Value, mut patch: Value) -> anyhow::Result<()> {
    let patch = patch.as_object_mut().context("an event patch is a JSON object")?;
    if let Some(body) = patch.remove("body") {
        let mut current: Value = match event["body"].as_str() {
            Some(text) => serde_json::from_str(text).context("the event's body is not JSON")?,
            None => json!({}),
        };
        merge(&mut current, body);
        event["body"] = Value::String(current.to_string());
    }
    for (single, multi) in [
        ("headers", "multiValueHeaders"),
        ("queryStringParameters", "multiValueQueryStringParameters"),
    ] {
        if let Some(values) = patch.remove(single) {
            if !event[single].is_object() {
                event[single] = json!({});
            }
            merge(&mut event[single], values);
            let lists: serde_json::Map<String, Value> = event[single]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), json!([v])))
                .collect();
            event[multi] = Value::Object(lists);
        }
    }
    merge(event, Value::Object(std::mem::take(patch)));
    Ok(())
}

/// Merges `patch` into `target`: objects key by key, anything else replaced.
fn merge(target: &mut Value, patch: Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                merge(target.entry(key).or_insert(Value::Null), value);
            }
        }
        (target, patch) => *target = patch,
    }
}

/// The patch that authenticates an event with `token`.
pub fn bearer(token: &str) -> Value {
    json!({"headers": {"Authorization": format!("Bearer {token}")}})
}

/// The patch that points `GET|PATCH|DELETE /favorites/{id}` at `id`.
pub fn favorite_path(id: &str) -> Value {
    json!({
        "path": format!("/favorites/{id}"),
        "pathParameters": {"id": id},
        "requestContext": {"path": format!("/prod/favorites/{id}")},
    })
}

/// Both patches merged (`b` wins).
pub fn both(mut a: Value, b: Value) -> Value {
    merge(&mut a, b);
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_patched_event_keeps_its_twins_in_step() {
        let mut event = json!({
            "headers": {"Host": "h"}, "multiValueHeaders": {"Host": ["h"]},
            "queryStringParameters": null, "body": "{\"email\":\"a@b.c\",\"password\":\"x\"}",
            "requestContext": {"path": "/prod/x", "stage": "prod"},
        });
        apply(
            &mut event,
            both(
                both(
                    bearer("t"),
                    json!({"queryStringParameters": {"limit": "all"}, "body": {"password": "y"}}),
                ),
                json!({"requestContext": {"path": "/prod/y"}}),
            ),
        )
        .unwrap();
        assert_eq!(event["headers"], json!({"Host": "h", "Authorization": "Bearer t"}));
        assert_eq!(event["multiValueHeaders"]["Authorization"], json!(["Bearer t"]));
        assert_eq!(event["multiValueQueryStringParameters"], json!({"limit": ["all"]}));
        let body: Value = serde_json::from_str(event["body"].as_str().unwrap()).unwrap();
        assert_eq!(body, json!({"email": "a@b.c", "password": "y"}));
        assert_eq!(event["requestContext"], json!({"path": "/prod/y", "stage": "prod"}));
    }
}
