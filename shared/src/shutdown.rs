//! Graceful shutdown. Lambda ends an instance with SIGKILL, unless an extension is registered:
//! then the runtime first gets SIGTERM and a short while (300 ms when only internal
//! extensions are registered) before the SIGKILL. So at cold start [`install`] registers an
//! internal extension that subscribes to no events (one call to the local Extensions API, then
//! an idle long poll), and on SIGTERM (or SIGINT, for a local Ctrl-C) the function flushes the
//! metrics recorded since its last answer, runs its [`Hooks`] (closing the database pools: RDS
//! Proxy gets a clean goodbye rather than a connection that goes silent) and exits 0.
//!
//! Where the Extensions API does not answer (a hand-made runtime API, such as the benchmarks'
//! stand-in) the registration fails, a warning says so, and the function serves as before,
//! without the SIGTERM. `cargo lambda watch` accepts internal extensions and, when it is
//! stopped, sends its functions SIGTERM and waits 500 ms before SIGKILL.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};

/// What a shutdown may take, all hooks together: within Lambda's shortest window, with room
/// for the flush and the exit.
const BUDGET: Duration = Duration::from_millis(200);

/// The internal extension's name: unique among the function's extensions.
const EXTENSION_NAME: &str = "favorites-graceful-shutdown";

type Hook = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// What to close on shutdown, each with a name for the log.
#[derive(Default)]
pub struct Hooks(Vec<(&'static str, Hook)>);

impl Hooks {
    /// Runs `hook` on shutdown (with the others, within the shutdown budget).
    pub fn add<F, Fut>(&mut self, what: &'static str, hook: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.0.push((what, Box::new(move || Box::pin(hook()))));
    }
}

/// Asks Lambda for a SIGTERM before shutdown and handles it by running `hooks`. Call at cold
/// start, before the runtime loop starts (registration must happen during the init phase).
pub async fn install(hooks: Hooks) {
    let (mut terminate, mut interrupt) = match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(terminate), Ok(interrupt)) => (terminate, interrupt),
        (Err(error), _) | (_, Err(error)) => {
            tracing::warn!(error = %error, "no graceful shutdown: cannot handle signals");
            return;
        }
    };
    let registration = crate::runtime::register_extension(EXTENSION_NAME, &[]).await;
    match registration {
        Ok(extension) => {
            tokio::spawn(async move {
                // Lambda's answer to the extension's long poll never comes (no events are
                // subscribed); an emulator may refuse it at once, which changes nothing.
                if let Err(error) = extension.run().await {
                    tracing::debug!(error = %error, "the shutdown extension's event loop ended");
                }
            });
        }
        Err(error) => tracing::warn!(
            error = %error,
            "no graceful shutdown: the Extensions API refused the registration; metrics recorded after the last answer may be lost"
        ),
    }
    tokio::spawn(async move {
        let signal = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        };
        shut_down(signal, hooks).await;
    });
}

/// Flushes the metrics, runs the hooks within [`BUDGET`], and exits 0.
async fn shut_down(signal: &'static str, Hooks(hooks): Hooks) -> ! {
    tracing::info!(signal, "shutting down");
    crate::metrics::flush();
    let names: Vec<&str> = hooks.iter().map(|(what, _)| *what).collect();
    let run = futures::future::join_all(hooks.into_iter().map(|(_, hook)| hook()));
    let in_time = tokio::time::timeout(BUDGET, run).await.is_ok();
    // Anything the hooks recorded.
    crate::metrics::flush();
    tracing::info!(closed = names.join(", "), in_time, "shut down");
    std::process::exit(0)
}
