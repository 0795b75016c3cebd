//! The deployed shape (`make stack`, e2e::stack) holds a function to what the template gives
//! it: a copy of template.yaml without one of a function's policy statements makes the route
//! fail on the call that statement allowed, with the AccessDenied in the function's log, as in
//! AWS; a copy without one of its variables keeps the stack from starting, naming both.
//! Needs what `make test` starts: the TLS Postgres and Redis, the IAM-enforcing moto
//! (`STACK_AWS_*`) and the debug build of the functions.

use std::path::PathBuf;

use e2e::stack::{Stack, cli::options_from_env};
use e2e::template::repo_root;
use serde_json::json;

/// The template with the lines from the one containing `from` to the one containing `to`
/// (inclusive), the first such after the line `LoginFunction:`, left out.
fn login_function_without(from: &str, to: &str) -> (tempdir::Dir, PathBuf) {
    let text = std::fs::read_to_string(repo_root().join("template.yaml")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let function = lines.iter().position(|l| l.trim() == "LoginFunction:").unwrap();
    let start = function + lines[function..].iter().position(|l| l.contains(from)).unwrap();
    let end = start + lines[start..].iter().position(|l| l.contains(to)).unwrap();
    let kept: Vec<&str> = lines[..start].iter().chain(&lines[end + 1..]).copied().collect();
    let dir = tempdir::Dir::new();
    let path = dir.0.join("template.yaml");
    std::fs::write(&path, kept.join("\n")).unwrap();
    (dir, path)
}

/// The stack's options for `template`, with a database of its own.
fn options(template: PathBuf) -> e2e::stack::Options {
    let id = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let mut options = options_from_env(&format!("favorites-check-{id}")).unwrap();
    options.template = template;
    options
        .parameters
        .insert("DatabaseName".into(), format!("favorites_check_{id}"));
    // This test runs from target/<profile>/deps; the functions are in target/<profile>.
    let exe = std::env::current_exe().unwrap();
    options.bin_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
    options
}

// One test, the two cases in turn: each stack sets the template's master role's password.
#[tokio::test]
async fn a_missing_statement_is_access_denied_and_a_missing_variable_stops_the_stack() {
    // LoginFunction's statement on the login throttle table, gone.
    let (_dir, template) = login_function_without("- Statement:", "Resource: !GetAtt LoginThrottleTable.Arn");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stack = Stack::start(&options(template), listener).await.unwrap();
    let answer = reqwest::Client::new()
        .post(format!("{}/login", stack.url))
        .json(&json!({"email": "nobody@example.com", "password": "not the password"}))
        .send()
        .await
        .unwrap();
    let status = answer.status();
    let logs: String = stack
        .logs("LoginFunction")
        .iter()
        .map(|log| std::fs::read_to_string(log).unwrap_or_default())
        .collect();
    assert!(
        logs.lines()
            .any(|l| l.contains("AccessDenied") && l.contains("BatchGetItem")),
        "no AccessDenied on BatchGetItem in LoginFunction's log (login answered {status}):\n{logs}"
    );
    drop(stack);

    // LoginFunction's JWT_SECRET_ARN, gone.
    let (_dir, template) = login_function_without("JWT_SECRET_ARN: !Ref JwtSecret", "JWT_SECRET_ARN");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let refused = match Stack::start(&options(template), listener).await {
        Ok(_) => panic!("the stack started with LoginFunction missing JWT_SECRET_ARN"),
        Err(error) => format!("{error:#}"),
    };
    assert!(
        refused.contains("LoginFunction") && refused.contains("JWT_SECRET_ARN"),
        "the refusal does not name the function and the variable: {refused}"
    );
    assert_eq!(refused.lines().count(), 1, "one line: {refused}");
}

mod tempdir {
    /// A directory under the system's temporary one, removed when dropped.
    pub struct Dir(pub std::path::PathBuf);

    impl Dir {
        pub fn new() -> Self {
            let path = std::env::temp_dir().join(format!("favorites-stack-{}", uuid::Uuid::new_v4().simple()));
            std::fs::create_dir_all(&path).unwrap();
            Self(path)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
